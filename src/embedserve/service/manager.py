"""Resident models: load on first use, keep_alive with Ollama's semantics, LRU eviction, crash reload.

* ``acquire(name, keep_alive)`` loads the model if needed (one load per name, however many requests
  wait for it; the loader runs in a worker thread) and holds a reference; ``release`` drops it.
* ``keep_alive`` (seconds; ``math.inf`` forever; ``0`` unload when idle) set by a request replaces
  the model's value; an omitted one keeps it (``Settings.keep_alive`` on first load). The expiry
  timer starts when the last reference is released, so ``expires_at = idle_since + keep_alive``.
* A model that loads past ``Settings.max_loaded_models`` evicts the least recently used *idle*
  model (if every model is busy it stays anyway; nothing waits). Eviction happens after the load
  succeeds, so a request for a missing model never costs a resident one.
* A batcher crash marks its model ``failed`` (shown by ``/health``); the next ``acquire`` reloads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from typing import Any

from embedserve.config import Settings
from embedserve.engine.base import Engine
from embedserve.errors import EmbedServeError, EngineError, UserError
from embedserve.service.batcher import Batcher
from embedserve.service.metrics import Metrics
from embedserve.store import names

Loader = Callable[[str], Engine]  # blocking: name as requested -> engine; raises ModelNotFound

log = logging.getLogger("embedserve.service")

FOREVER_SECONDS = 292 * 365 * 24 * 3600.0  # Go's MaxInt64 ns, as /api/ps shows it


class ResidentModel:
    """One loaded (or loading, or failed) model."""

    def __init__(self, key: str, requested: str, keep_alive: float) -> None:
        self.key = key  # canonical name: "all-minilm:latest"
        self.requested = requested
        self.state = "loading"  # "loading" | "ready" | "failed"
        self.error = ""
        self.engine: Engine | None = None
        self.batcher: Batcher | None = None
        self.keep_alive = keep_alive
        self.refs = 0
        self.last_used = time.monotonic()
        self.idle_since = time.time()
        self.loaded_at = 0.0
        self.load_seconds = 0.0
        self.load_task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    @property
    def expires_at(self) -> float:
        """Unix time this model will be unloaded if it stays idle (far future for forever)."""
        if math.isinf(self.keep_alive):
            return time.time() + FOREVER_SECONDS
        if self.refs:
            return time.time() + self.keep_alive
        return self.idle_since + self.keep_alive


class ModelManager:
    def __init__(
        self,
        settings: Settings,
        loader: Loader,
        executor: Executor,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.loader = loader
        self.executor = executor
        self.metrics = metrics
        self.models: dict[str, ResidentModel] = {}
        self._closed = False
        if metrics is not None:
            metrics.queue_depth.collect = self._depths
            metrics.loaded.collect = self._states

    def batchers(self) -> list[Batcher]:
        """The resident models' batchers (admission control reads their depths)."""
        return [m.batcher for m in self.models.values() if m.batcher is not None]

    def _depths(self) -> list[tuple[tuple[str, ...], float]]:
        return [((k,), float(m.batcher.depth)) for k, m in self.models.items() if m.batcher]

    def _states(self) -> list[tuple[tuple[str, ...], float]]:
        return [((k, m.state), 1.0) for k, m in self.models.items()]

    # -- references ---------------------------------------------------------------------------

    async def acquire(self, name: str, keep_alive: float | None = None) -> ResidentModel:
        """Hold ``name`` loaded (loading it if needed). Pair with :meth:`release`."""
        if self._closed:
            raise EngineError("server is shutting down")
        key = names.canonical(name)
        if keep_alive is not None and keep_alive >= FOREVER_SECONDS:
            keep_alive = math.inf  # beyond Go's MaxInt64 ns, and beyond what a date can show
        model = self.models.get(key)
        if model is None or model.state == "failed":
            if model is not None:
                await self._drop(model)
            model = ResidentModel(
                key, name, self.settings.keep_alive if keep_alive is None else keep_alive
            )
            self.models[key] = model
            model.load_task = asyncio.get_running_loop().create_task(self._load(model))
        elif keep_alive is not None:
            model.keep_alive = keep_alive
        model.refs += 1
        if model.timer is not None:
            model.timer.cancel()
            model.timer = None
        if model.state == "loading" and model.load_task is not None:
            try:
                await asyncio.shield(model.load_task)
            except BaseException:
                model.refs -= 1
                raise
        if model.state != "ready":
            model.refs -= 1
            raise EngineError(f"model {key!r} failed to load: {model.error}")
        model.last_used = time.monotonic()
        return model

    def release(self, model: ResidentModel) -> None:
        model.refs -= 1
        model.last_used = time.monotonic()
        if model.refs > 0:
            return
        if self.models.get(model.key) is not model:  # retired by unload() while in use
            if model.batcher is not None:
                asyncio.get_running_loop().create_task(self._drop(model))
            return
        model.idle_since = time.time()
        if model.state != "ready":
            return
        if model.keep_alive <= 0:
            asyncio.get_running_loop().create_task(self._unload_if_idle(model))
        elif not math.isinf(model.keep_alive):
            model.timer = asyncio.get_running_loop().call_later(
                model.keep_alive, lambda: asyncio.ensure_future(self._unload_if_idle(model))
            )

    @asynccontextmanager
    async def use(self, name: str, keep_alive: float | None = None) -> AsyncIterator[ResidentModel]:
        model = await self.acquire(name, keep_alive)
        try:
            yield model
        finally:
            self.release(model)

    # -- loading and unloading ----------------------------------------------------------------

    async def _load(self, model: ResidentModel) -> None:
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            engine = await loop.run_in_executor(self.executor, self.loader, model.requested)
        except BaseException as exc:
            model.state = "failed"
            model.error = str(exc)
            # not installed / bad name: nothing resident to report
            gone = isinstance(exc, UserError) or not isinstance(exc, Exception)
            if gone and self.models.get(model.key) is model:
                del self.models[model.key]
            if isinstance(exc, Exception) and not isinstance(exc, EmbedServeError):
                # an unexpected failure (I/O, ONNX Runtime): one clean error, not a traceback
                log.warning("loading %s failed", model.key, exc_info=True)
                raise EngineError(f"loading model {model.key!r} failed: {exc}") from exc
            raise
        model.engine = engine
        await self._make_room(model)  # only once it loaded: a bad name evicts nothing
        model.batcher = Batcher(
            engine,
            self.executor,
            name=model.key,
            max_queue=self.settings.max_queue,
            batch_tokens=self.settings.batch_tokens,
            metrics=self.metrics,
            on_crash=lambda _b, exc: self._crashed(model, exc),
        )
        model.load_seconds = time.perf_counter() - t0
        model.loaded_at = time.time()
        model.state = "ready"

    def _crashed(self, model: ResidentModel, exc: BaseException) -> None:
        model.state = "failed"
        model.error = str(exc) or type(exc).__name__
        if model.timer is not None:
            model.timer.cancel()
            model.timer = None

    async def _make_room(self, incoming: ResidentModel) -> None:
        limit = max(1, self.settings.max_loaded_models)
        while True:
            resident = [m for m in self.models.values() if m is not incoming]
            if len(resident) < limit:
                return
            idle = [m for m in resident if m.refs == 0 and m.state != "loading"]
            if not idle:
                return  # everything is busy: over-commit rather than make requests wait
            await self._drop(min(idle, key=lambda m: m.last_used))

    async def _unload_if_idle(self, model: ResidentModel) -> None:
        if model.refs == 0 and self.models.get(model.key) is model:
            await self._drop(model)

    async def _drop(self, model: ResidentModel) -> None:
        if self.models.get(model.key) is model:
            del self.models[model.key]
        if model.timer is not None:
            model.timer.cancel()
            model.timer = None
        if model.batcher is not None:
            await model.batcher.close()
        close = getattr(model.engine, "close", None)
        model.engine = None
        if callable(close):
            try:
                close()
            except Exception:  # unloading must not fail the request that caused it
                log.warning("closing %s failed", model.key, exc_info=True)

    async def unload(self, name: str) -> bool:
        """Unload ``name`` (delete, pull): now if idle, else after its in-flight requests finish."""
        try:
            key = names.canonical(name)
        except UserError:
            return False
        model = self.models.get(key)
        if model is None:
            return False
        if model.refs > 0:  # in-flight requests finish first; release() drops it after the last
            del self.models[key]
            return True
        await self._drop(model)
        return True

    # -- views --------------------------------------------------------------------------------

    def running(self) -> list[ResidentModel]:
        """Ready models, latest expiry first (``/api/ps`` order)."""
        ready = [m for m in self.models.values() if m.state == "ready"]
        return sorted(ready, key=lambda m: m.expires_at, reverse=True)

    def health(self) -> dict[str, Any]:
        models = []
        for m in self.models.values():
            entry: dict[str, Any] = {"name": m.key, "state": m.state}
            if m.error:
                entry["error"] = m.error
            if m.batcher is not None and m.state == "ready":
                entry["queue_depth"] = m.batcher.depth
            models.append(entry)
        failed = any(m.state == "failed" for m in self.models.values())
        return {"status": "degraded" if failed else "ok", "models": models}

    async def close(self) -> None:
        self._closed = True
        for model in list(self.models.values()):
            if model.load_task is not None and not model.load_task.done():
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(model.load_task), timeout=30)
            await self._drop(model)
