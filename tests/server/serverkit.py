"""Test helpers: a stand-in model store, a fake-engine loader, and a real uvicorn server in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import uvicorn

from embedserve.config import Settings
from embedserve.engine.fake import FakeEngine
from embedserve.errors import ModelNotFound, PullError
from embedserve.store.names import canonical
from embedserve.store.progress import ProgressEvent


@dataclass(frozen=True)
class FakeInstalled:
    name: str
    folder: Path
    digest: str
    quantization: str = "fp32"
    card: Any = None
    size: int = 1234
    modified_at: datetime = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    source: str = "fake"
    architecture: str = "bert"
    layers: int = 2
    dim: int = 32
    max_tokens: int = 64
    pooling: str = "mean"
    normalize: bool = True
    parameters: int = 22_600_000
    license: str = "Apache-2.0"


class FakeStore:
    """The ModelStore methods the server uses, in memory. ``catalogue`` is what ``pull`` can get."""

    def __init__(
        self, installed: tuple[str, ...] = ("fake",), catalogue: tuple[str, ...] = ()
    ) -> None:
        self.models: dict[str, FakeInstalled] = {}
        self.catalogue = {canonical(n) for n in catalogue}
        self.lock = threading.Lock()
        for name in installed:
            self._install(name)

    def _install(self, name: str) -> FakeInstalled:
        canon = canonical(name)
        model = FakeInstalled(canon, Path("/nonexistent"), f"{abs(hash(canon)):064d}"[:64])
        self.models[canon] = model
        return model

    def resolve(self, name: str) -> str:
        return canonical(name)

    def find(self, name: str) -> FakeInstalled | None:
        return self.models.get(canonical(name))

    def get(self, name: str) -> FakeInstalled:
        model = self.find(name)
        if model is None:
            raise ModelNotFound(f"model '{canonical(name)}' is not installed", name=canonical(name))
        return model

    def list(self) -> list[FakeInstalled]:
        return sorted(self.models.values(), key=lambda m: m.modified_at, reverse=True)

    def remove(self, name: str) -> None:
        with self.lock:
            if self.models.pop(canonical(name), None) is None:
                raise ModelNotFound(f"model '{canonical(name)}' is not installed")

    def copy(self, source: str, destination: str) -> FakeInstalled:
        model = self.get(source)
        with self.lock:
            new = replace(model, name=canonical(destination))
            self.models[new.name] = new
        return new

    def pull(
        self, name: str, *, progress: Callable[[ProgressEvent], None] | None = None
    ) -> FakeInstalled:
        canon = canonical(name)
        emit = progress or (lambda e: None)
        emit(ProgressEvent("pulling manifest"))
        if canon not in self.catalogue and canon not in self.models:
            raise PullError(f"pull model manifest: file does not exist ({canon})")
        for done in (0, 512, 1024):
            emit(
                ProgressEvent(
                    "pulling 0123456789ab",
                    digest="sha256:" + "0123456789ab" * 5 + "0123",
                    total=1024,
                    completed=done,
                )
            )
            time.sleep(0.01)
        emit(ProgressEvent("verifying sha256 digest"))
        emit(ProgressEvent("writing manifest"))
        with self.lock:
            model = self._install(canon)
        emit(ProgressEvent("success"))
        return model


class FakeLoader:
    """``loader(name) -> FakeEngine`` for installed names; records every load."""

    def __init__(self, store: FakeStore, **engine_kw: Any) -> None:
        self.store = store
        self.engine_kw = engine_kw
        self.loads: list[str] = []
        self.engines: list[FakeEngine] = []
        self.delay = 0.0

    def __call__(self, name: str) -> FakeEngine:
        model = self.store.get(name)
        if self.delay:
            time.sleep(self.delay)
        engine = FakeEngine(
            model.name, dim=model.dim, max_tokens=model.max_tokens, **self.engine_kw
        )
        self.loads.append(model.name)
        self.engines.append(engine)
        return engine


def free_socket() -> socket.socket:
    # proto must be IPPROTO_TCP, or asyncio skips TCP_NODELAY on accepted sockets (40 ms stalls)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve(app: Any, *, timeout_graceful_shutdown: float = 5.0) -> Iterator[str]:
    """Run ``app`` on a real uvicorn server on 127.0.0.1 in a thread; yields the base URL."""
    sock = free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", timeout_graceful_shutdown=timeout_graceful_shutdown
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def settings(**kw: Any) -> Settings:
    return Settings(home=Path("/nonexistent-embedserve-home"), **kw)
