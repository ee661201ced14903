"""Keys (scrypt hash, prefix, verification), plans (defaults, TOML), the SQLite store and the
in-memory limits, without a server."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from embedserve.auth import create_key
from embedserve.auth.keys import VerifiedCache, generate_key, hash_key, key_prefix, verify_key
from embedserve.auth.limits import InFlight, RateWindow
from embedserve.auth.meter import UsageMeter
from embedserve.auth.plans import DEFAULT_PLANS, load_plans
from embedserve.auth.sqlite_store import SQLiteKeyStore
from embedserve.auth.store import UsageDelta
from embedserve.errors import AuthError, InvalidInput, LimitExceeded


def test_key_hash_is_salted_scrypt_and_verifies() -> None:
    key = generate_key()
    assert key.startswith("esk_") and len(key) >= 40
    h1, h2 = hash_key(key), hash_key(key)
    assert h1 != h2  # salted
    assert h1.startswith("scrypt$16384$8$1$") and key not in h1
    assert verify_key(key, h1) and verify_key(key, h2)
    assert not verify_key(key[:-1] + ("A" if key[-1] != "A" else "B"), h1)
    assert not verify_key(key, "sha256$whatever") and not verify_key(key, "garbage")
    assert key_prefix(key) == key[:12]


def test_verified_cache_holds_no_key() -> None:
    cache = VerifiedCache(limit=2)
    key = generate_key()
    cache.put(key, "id1")
    assert cache.get(key) == "id1" and cache.get(generate_key()) is None
    assert all(key.encode() not in tag for tag in cache._ids)
    cache.forget("id1")
    assert cache.get(key) is None


def test_default_plans_follow_the_issue() -> None:
    free, pro, mx = DEFAULT_PLANS["free"], DEFAULT_PLANS["pro"], DEFAULT_PLANS["max"]
    assert (free.concurrent_models, pro.concurrent_models, mx.concurrent_models) == (1, 3, 10)
    assert pro.session_compute_seconds == 50 * free.session_compute_seconds
    assert mx.weekly_compute_seconds == 5 * pro.weekly_compute_seconds
    assert DEFAULT_PLANS["admin"].admin and math.isinf(DEFAULT_PLANS["admin"].concurrent_models)


def test_plans_toml_overrides_and_extends(tmp_path: Path) -> None:
    f = tmp_path / "plans.toml"
    f.write_text(
        "[plans.free]\nsession_compute_seconds = 5\n"
        "[plans.team]\nconcurrent_models = 5\nweekly_compute_seconds = inf\n"
    )
    plans = load_plans(f)
    assert plans["free"].session_compute_seconds == 5
    assert plans["free"].concurrent_models == 1  # kept
    assert plans["team"].concurrent_models == 5 and math.isinf(plans["team"].weekly_compute_seconds)
    assert plans["team"].requests_per_minute == DEFAULT_PLANS["free"].requests_per_minute
    assert plans["pro"] == DEFAULT_PLANS["pro"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[plans.free]\nconcurrent = 2\n", "unknown field plans.free.concurrent"),
        ("[plans.free]\nconcurrent_models = -1\n", "must be a number >= 0"),
        ("[plans.free]\nadmin = 1\n", "admin must be true or false"),
        ("[plans.free\n", "not valid TOML"),
        ("free = 1\n", "unknown top-level key"),
    ],
)
def test_plans_toml_errors_are_specific(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "plans.toml"
    f.write_text(text)
    with pytest.raises(InvalidInput, match=message):
        load_plans(f)


def test_sqlite_store_keeps_only_the_hash_in_wal_mode(tmp_path: Path) -> None:
    store = SQLiteKeyStore(tmp_path)
    key, record = create_key(store, DEFAULT_PLANS, "pro", name="ci", models=("all-minilm",))
    assert store.find("ci") == record and store.find(record.prefix) == record
    assert store.by_prefix(key_prefix(key)) == [record]
    with pytest.raises(AuthError, match="already exists"):
        create_key(store, DEFAULT_PLANS, "free", name="ci")
    with pytest.raises(InvalidInput, match="unknown plan"):
        create_key(store, DEFAULT_PLANS, "gold")
    revoked = store.revoke("ci", 123.0)
    assert revoked.revoked_at == 123.0 and store.revoke("ci", 456.0).revoked_at == 123.0
    with pytest.raises(AuthError, match="no key named"):
        store.revoke("nobody", 1.0)
    store.close()
    raw = (tmp_path / "auth.db").read_bytes()
    assert key.encode() not in raw and key[12:].encode() not in raw
    db = sqlite3.connect(tmp_path / "auth.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_usage_windows_add_and_roll(tmp_path: Path) -> None:
    store = SQLiteKeyStore(tmp_path)
    _, rec = create_key(store, DEFAULT_PLANS, "free")
    t0 = 1_000_000.0
    store.record_usage({rec.id: UsageDelta(t0, t0, 1, 2, 10, 0.5)})
    w = store.record_usage({rec.id: UsageDelta(t0 + 60, t0 + 60, 1, 3, 5, 0.25)})[rec.id]
    assert (w["session"].requests, w["session"].inputs, w["session"].tokens) == (2, 5, 15)
    assert w["session"].compute_seconds == pytest.approx(0.75)
    assert w["session"].resets_at == t0 + 5 * 3600 and w["weekly"].resets_at == t0 + 7 * 86400
    later = t0 + 5 * 3600 + 1  # the session expired, the week did not
    w = store.record_usage({rec.id: UsageDelta(later, later, 1, 1, 1, 0.1)})[rec.id]
    assert w["session"].started_at == later and w["session"].requests == 1
    assert w["weekly"].requests == 3 and w["weekly"].compute_seconds == pytest.approx(0.85)
    assert store.get(rec.id).last_used_at == later


def test_meter_checks_budget_with_reservations(tmp_path: Path) -> None:
    store = SQLiteKeyStore(tmp_path)
    _, rec = create_key(store, DEFAULT_PLANS, "free")
    plan = DEFAULT_PLANS["free"]
    meter = UsageMeter(store)
    now = 2_000_000.0
    meter.record(rec.id, now, inputs=1, seconds=plan.session_compute_seconds - 0.001)
    with pytest.raises(LimitExceeded, match="session usage limit reached") as info:
        meter.check(rec.id, plan, now + 1, 1)
    assert info.value.limit == "session"
    assert info.value.retry_after == pytest.approx(5 * 3600 - 1, abs=1)
    assert meter.flush() == 1 and meter.flush() == 0
    fresh = UsageMeter(store)  # another process (or a restart) sees the same use
    fresh.load(rec.id)
    assert fresh.view(rec.id, plan, now + 2)["session"].compute_seconds == pytest.approx(
        plan.session_compute_seconds - 0.001
    )
    assert fresh.view(rec.id, plan, now + 5 * 3600 + 1)["session"].compute_seconds == 0


def test_in_flight_counts_distinct_models_only() -> None:
    flight = InFlight()
    flight.enter("k", "a:latest", 2)
    flight.enter("k", "a:latest", 2)  # the same model: never refused for this
    flight.enter("k", "b:latest", 2)
    flight.enter("k", "b:latest", 2)
    with pytest.raises(LimitExceeded, match="concurrent model limit") as info:
        flight.enter("k", "c:latest", 2)
    assert info.value.limit == "concurrent_models"
    flight.enter("other", "c:latest", 2)  # per key
    flight.leave("k", "a:latest")
    with pytest.raises(LimitExceeded):
        flight.enter("k", "c:latest", 2)  # a:latest still has one in flight
    flight.leave("k", "a:latest")
    flight.enter("k", "c:latest", 2)
    assert flight.models("k") == ["b:latest", "c:latest"]


def test_rate_window_slides() -> None:
    rate = RateWindow()
    for i in range(3):
        rate.hit("k", 3, 100.0 + i)
    with pytest.raises(LimitExceeded, match="3 requests per minute") as info:
        rate.hit("k", 3, 110.0)
    assert info.value.retry_after == pytest.approx(50.0)
    rate.hit("k", 3, 160.5)  # the first one left the window


def test_compute_past_the_budget_is_overage_not_a_negative_remainder(tmp_path: Path) -> None:
    store = SQLiteKeyStore(tmp_path)
    _, rec = create_key(store, DEFAULT_PLANS, "free")
    plan = DEFAULT_PLANS["free"]
    meter = UsageMeter(store)
    now = 3_000_000.0
    meter.record(rec.id, now, inputs=4, seconds=plan.session_compute_seconds + 2.5)
    view = meter.view(rec.id, plan, now)["session"]
    assert view.compute_seconds == pytest.approx(plan.session_compute_seconds + 2.5)
    assert view.remaining == 0 and view.overage == pytest.approx(2.5)
    with pytest.raises(LimitExceeded):
        meter.check(rec.id, plan, now, 1)


def test_reservations_keep_concurrent_requests_inside_the_budget(tmp_path: Path) -> None:
    store = SQLiteKeyStore(tmp_path)
    _, rec = create_key(store, DEFAULT_PLANS, "free")
    plan = DEFAULT_PLANS["free"]
    meter = UsageMeter(store)
    now = 4_000_000.0
    for _ in range(20):  # what inputs of model m cost: ~10 ms each
        meter.record("someone-else", now, inputs=8, seconds=0.08, model="m")
    meter.record(rec.id, now, inputs=1, seconds=plan.session_compute_seconds - 1.0, model="n")
    assert meter.estimate(8, "m") == pytest.approx(0.16)  # 2x the mean: cautious
    admitted = 0
    with pytest.raises(LimitExceeded):
        for _ in range(10_000):  # requests in flight together, none finished yet
            meter.reserve(rec.id, meter.check(rec.id, plan, now, 8, "m"))
            admitted += 1
    assert admitted == 6  # 6 x 0.16 s fit in the 1 s left; a 7th would not
