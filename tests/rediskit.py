"""A real ``redis-server`` (Debian package, see scripts/services), started by the tests on loopback.

Each ``RedisServer`` runs in its own temporary directory on a free 127.0.0.1 port, without
persistence, and is stopped (or killed, to test an outage) by the test. ``redis_url`` is a fixture
that yields the URL of a fresh server for one test. Missing binary or client: skip locally, fail
under ``CI=true`` (``servicekit.require``).
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import servicekit

WHAT = "redis-server (apt-get install redis-server) and the redis client (pip install redis)"


def available() -> bool:
    return shutil.which("redis-server") is not None and importlib.util.find_spec("redis") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, *, port: int | None = None, args: tuple[str, ...] = ()) -> None:
        """``args``: more ``redis-server`` options (a unix socket, TLS, a password...)."""
        self.tmp = Path(tempfile.mkdtemp(prefix="embedserve-redis-"))
        self.port = port or _free_port()
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.proc = subprocess.Popen(
            [
                binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.tmp),
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--logfile", str(self.tmp / "redis.log"), "--enable-debug-command", "local",
                *self.args,
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.tmp,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self) -> str:
        path = self.tmp / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as an outage: nothing is flushed, connections drop."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    servicekit.require(available(), WHAT)
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()
