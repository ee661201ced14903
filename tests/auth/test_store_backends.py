"""One suite for every key store: SQLite (always) and PostgreSQL (a real server, tests/pgkit.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from embedserve.auth import create_key
from embedserve.auth.plans import DEFAULT_PLANS
from embedserve.auth.sqlite_store import SQLiteKeyStore
from embedserve.auth.store import KeyStore, UsageDelta
from embedserve.errors import AuthError


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], KeyStore]]:
    """Opens a store on one shared database (each call: a new connection, like a new process)."""
    if request.param == "sqlite":
        yield lambda: SQLiteKeyStore(tmp_path)
        return
    url = request.getfixturevalue("pg_url")  # tests/pgkit.py: a real PostgreSQL on loopback
    from embedserve.auth.postgres_store import PostgresKeyStore

    yield lambda: PostgresKeyStore(url)


def test_keys_round_trip(opener: Callable[[], KeyStore]) -> None:
    store = opener()
    key, record = create_key(store, DEFAULT_PLANS, "pro", name="ci", models=("all-minilm", "n*"))
    other = opener()
    assert other.find("ci") == record and other.find(record.prefix) == record
    assert other.get(record.id) == record and other.by_prefix(record.prefix) == [record]
    assert [r.name for r in other.list()] == ["ci"]
    assert key not in record.hash and record.models == ("all-minilm", "n*")
    with pytest.raises(AuthError, match="already exists"):
        create_key(other, DEFAULT_PLANS, "free", name="ci")
    assert other.revoke(record.prefix, 10.0).revoked_at == 10.0
    assert store.revoke("ci", 20.0).revoked_at == 10.0  # revoking twice keeps the first time
    with pytest.raises(AuthError, match="no key named"):
        store.revoke("nobody", 1.0)
    store.close()
    other.close()


def test_usage_rolls_windows(opener: Callable[[], KeyStore]) -> None:
    store = opener()
    _, rec = create_key(store, DEFAULT_PLANS, "free")
    t0 = 1_000_000.0
    store.record_usage({rec.id: UsageDelta(t0, t0, 1, 2, 10, 0.5)})
    w = store.record_usage({rec.id: UsageDelta(t0 + 60, t0 + 61, 1, 3, 5, 0.25)})[rec.id]
    assert (w["session"].requests, w["session"].inputs, w["session"].tokens) == (2, 5, 15)
    assert w["session"].compute_seconds == pytest.approx(0.75)
    later = t0 + 5 * 3600 + 1
    w = store.record_usage({rec.id: UsageDelta(later, later, 1, 1, 1, 0.1)})[rec.id]
    assert w["session"].started_at == later and w["session"].requests == 1
    assert w["weekly"].started_at == t0 and w["weekly"].requests == 3
    assert store.usage(rec.id) == w
    assert store.get(rec.id).last_used_at == later
    store.close()


def test_processes_metering_one_key_compose(opener: Callable[[], KeyStore]) -> None:
    first = opener()
    _, rec = create_key(first, DEFAULT_PLANS, "max")
    stores = [opener() for _ in range(4)]
    t0 = 2_000_000.0

    def meter(store: KeyStore) -> None:
        for i in range(25):
            store.record_usage({rec.id: UsageDelta(t0 + i, t0 + i, 1, 2, 3, 0.01)})

    threads = [threading.Thread(target=meter, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    session = first.usage(rec.id)["session"]
    assert (session.requests, session.inputs, session.tokens) == (100, 200, 300)
    assert session.compute_seconds == pytest.approx(1.0)
    for s in (first, *stores):
        s.close()


def test_two_servers_on_one_store_share_the_meter(opener: Callable[[], KeyStore]) -> None:
    """Scale-out: two server processes (each its own connection and meter) meter one key; after
    a flush each one's /api/usage counts the other's requests too."""
    import time

    import httpx
    from serverkit import FakeLoader, FakeStore, serve, settings

    from embedserve.auth.plans import load_plans
    from embedserve.auth.service import AuthService
    from embedserve.server.app import create_app

    plans = load_plans()
    key, _ = create_key(opener(), plans, "pro")
    headers = {"Authorization": f"Bearer {key}"}

    def app() -> object:
        fake = FakeStore()
        service = AuthService(opener(), plans, flush_seconds=0.2)
        return create_app(settings(auth=True), loader=FakeLoader(fake), store=fake, auth=service)

    with serve(app()) as a, serve(app()) as b:
        for url, n in ((a, 3), (b, 2)):
            for _ in range(n):
                r = httpx.post(
                    url + "/api/embed", json={"model": "fake", "input": "x y"}, headers=headers
                )
                assert r.status_code == 200
        time.sleep(0.6)  # both flushed
        httpx.post(a + "/api/embed", json={"model": "fake", "input": "z"}, headers=headers)
        time.sleep(0.6)  # a's flush reads back b's rows too
        usage = httpx.get(a + "/api/usage", headers=headers).json()["windows"]["session"]
        assert usage["requests"] == 6 and usage["inputs"] == 6


@pytest.mark.postgres
def test_cli_keys_use_the_database_url(
    pg_url: str, home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from clikit import run

    from embedserve.auth.postgres_store import PostgresKeyStore

    monkeypatch.setenv("EMBEDSERVE_DATABASE_URL", pg_url)
    code, out, err = run(capsys, "keys", "create", "--plan", "max", "--name", "pg")
    assert code == 0, err
    key = out.strip().splitlines()[-1]
    record = PostgresKeyStore(pg_url).find("pg")
    assert record is not None and record.plan == "max" and key not in record.hash
    assert not (home / "auth.db").exists()  # not SQLite
    code, out, _ = run(capsys, "keys", "list")
    assert "pg" in out and key not in out
