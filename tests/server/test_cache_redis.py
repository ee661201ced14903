"""The cache's Redis level against a real redis-server: shared between servers, TTL, outages."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest
from rediskit import RedisServer
from serverkit import FakeLoader, FakeStore, serve, settings

from embedserve.server.app import create_app

pytestmark = pytest.mark.redis


def _app(url: str, **kw):  # type: ignore[no-untyped-def]
    store = FakeStore(("fake",))
    loader = FakeLoader(store)
    kw.setdefault("cache_mb", 0)  # Redis only, unless a test wants memory too
    app = create_app(settings(redis_url=url, redis_timeout=0.2, **kw), loader=loader, store=store)
    return app, loader


def _metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def _wait_for(condition, seconds: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _flush(app) -> None:  # type: ignore[no-untyped-def]
    app.state.embedserve.cache.remote.flush()


def test_two_servers_share_vectors_through_redis(redis_server: RedisServer) -> None:
    import redis

    texts = ["first shared text", "second shared text"]
    app_a, loader_a = _app(redis_server.url, cache_ttl=600)
    with serve(app_a) as url, httpx.Client(base_url=url, timeout=30) as a:
        first = a.post("/api/embed", json={"model": "fake", "input": texts}).json()
        _flush(app_a)
    assert sum(loader_a.engines[0].batches) == 2
    r = redis.Redis.from_url(redis_server.url)
    keys = r.keys("embedserve:1:*")
    assert len(keys) == 2
    assert all(0 < r.ttl(k) <= 600 for k in keys)  # EMBEDSERVE_CACHE_TTL
    app_b, loader_b = _app(redis_server.url, cache_mb=16)
    with serve(app_b) as url, httpx.Client(base_url=url, timeout=30) as b:
        second = b.post("/api/embed", json={"model": "fake", "input": texts}).json()
        assert 'embedserve_cache_hits_total{level="redis"} 2' in b.get("/metrics").text
        b.post("/api/embed", json={"model": "fake", "input": texts})  # now from memory
        assert 'embedserve_cache_hits_total{level="memory"} 2' in b.get("/metrics").text
    assert not loader_b.engines[0].batches  # server B computed nothing
    assert second["embeddings"] == first["embeddings"]
    assert second["prompt_eval_count"] == first["prompt_eval_count"]


def test_killing_redis_mid_run_never_fails_a_request(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="embedserve.cache")
    app, _ = _app(redis_server.url)
    statuses: list[int] = []
    stop = threading.Event()
    with serve(app) as url:

        def client_loop() -> None:
            with httpx.Client(base_url=url, timeout=30) as c:
                i = 0
                while not stop.is_set():
                    texts = [f"text {i % 7}", f"other {i}"]
                    statuses.append(
                        c.post("/api/embed", json={"model": "fake", "input": texts}).status_code
                    )
                    i += 1

        workers = [threading.Thread(target=client_loop) for _ in range(3)]
        for w in workers:
            w.start()
        _wait_for(lambda: len(statuses) >= 10)
        before = len(statuses)
        redis_server.kill()  # mid-run
        _wait_for(lambda: len(statuses) >= before + 30)
        during = len(statuses)
        port = redis_server.port
        revived = RedisServer(port=port).start()  # back on the same port
        try:
            with httpx.Client(base_url=url, timeout=30) as c:
                deadline = time.monotonic() + 10  # the back-off retries within ~1 s here
                while _metric(c, "embedserve_cache_redis_up") != 1 and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert _metric(c, "embedserve_cache_redis_up") == 1
                stop.set()
                for w in workers:
                    w.join(30)
                assert _metric(c, "embedserve_cache_redis_errors_total") >= 1
            _flush(app)
            import redis

            assert redis.Redis.from_url(revived.url).dbsize() > 0  # writes resumed
        finally:
            stop.set()
            revived.close()
    assert before > 0 and during > before  # requests kept flowing while Redis was down
    assert statuses and set(statuses) == {200}
    down = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(down) == 1  # one warning for the outage, not one per request
    assert any("is back" in r.getMessage() for r in caplog.records)


def test_a_slow_redis_is_skipped_within_the_timeout(redis_server: RedisServer) -> None:
    import redis

    app, _ = _app(redis_server.url)
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        c.post("/api/embed", json={"model": "fake", "input": ["warm up"]})
        blocker = threading.Thread(
            target=lambda: redis.Redis.from_url(redis_server.url).execute_command("DEBUG", "SLEEP", 3)
        )
        blocker.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        r = c.post("/api/embed", json={"model": "fake", "input": ["while redis sleeps"]})
        took = time.monotonic() - t0
        blocker.join()
        assert r.status_code == 200
        assert took < 1.5  # bounded by the 0.2 s timeout, not Redis's 3 s stall
        assert _metric(c, "embedserve_cache_redis_errors_total") >= 1


def test_redis_unreachable_at_start_serves_without_cache() -> None:
    pytest.importorskip("redis")
    app, _ = _app("redis://127.0.0.1:1/0")  # nothing listens on port 1
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        for _ in range(3):
            assert c.post("/api/embed", json={"model": "fake", "input": ["x"]}).status_code == 200
        assert _metric(c, "embedserve_cache_redis_up") == 0


def test_writes_never_wait_for_a_stalled_redis_and_land_once_it_answers(
    redis_server: RedisServer,
) -> None:
    """The library's writes: sent at once, their replies read later; Redis asleep costs nothing."""
    import redis

    from embedserve.cache.remote import RedisTier

    tier = RedisTier(redis_server.url, ttl=600, timeout=2.0)
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert tier.get_many(["warm"]) == [None]  # the tier holds an open connection
        sleeper = threading.Thread(target=lambda: redis.Redis.from_url(redis_server.url).execute_command("DEBUG", "SLEEP", 1.5))
        sleeper.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        for r in range(5):
            tier.put_later([(f"k{r}-{i}", b"v%d" % i) for i in range(10)])
        spent = time.monotonic() - t0
        assert tier.pending == 50
        sleeper.join()
        tier.flush(10)
        assert tier.pending == 0 and tier.errors == 0
        assert spent < 0.5  # five writes while Redis slept 1.5 s: none waited for it
        assert len(client.keys("k*")) == 50 and client.get("k3-9") == b"v9"
        assert 0 < client.ttl("k0-0") <= 600
        assert tier.get_many(["k4-1", "nope"]) == [b"v1", None]  # replies stayed in step
    finally:
        tier.close()


def test_on_the_event_loop_writes_wait_for_the_next_lookup_and_beyond_the_bound_are_dropped(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    import redis

    from embedserve.cache import remote as remote_mod
    from embedserve.cache.remote import RedisTier

    monkeypatch.setattr(remote_mod, "_MAX_QUEUED", 40)
    tier = RedisTier(redis_server.url, ttl=600, timeout=5.0)
    client = redis.Redis.from_url(redis_server.url)

    async def run() -> dict[str, object]:
        seen: dict[str, object] = {"warm": await tier.get_many_async(["warm"])}
        sleeper = threading.Thread(target=lambda: redis.Redis.from_url(redis_server.url).execute_command("DEBUG", "SLEEP", 1.5))
        sleeper.start()
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        for r in range(5):  # 10 entries each; 40 may be unanswered
            tier.put_later([(f"k{r}-{i}", b"v%d" % i) for i in range(10)])
        seen["spent"] = time.monotonic() - t0
        seen["pending"], seen["dropped"] = tier.pending, tier.dropped_writes
        await asyncio.to_thread(sleeper.join)
        await asyncio.to_thread(tier.flush, 10)
        seen["flushed"] = tier.pending
        tier.put_later([("later", b"x")])  # room again; it rides along with the next lookup:
        seen["queued"] = tier.pending
        seen["after"] = await tier.get_many_async(["later", "k3-9"])  # so this lookup sees it
        await tier.aclose()
        return seen

    try:
        seen = asyncio.run(run())
    finally:
        tier.close()
    assert seen["warm"] == [None]
    assert seen["spent"] < 0.5  # the loop never waited for the sleeping Redis
    assert seen["pending"] == 40 and seen["dropped"] == 10
    assert seen["flushed"] == 0 and seen["queued"] == 1
    assert seen["after"] == [b"x", b"v9"]
    assert len(client.keys("k*")) == 40 and client.get("k4-0") is None
    assert tier.errors == 0


def test_after_many_misses_a_request_redis_answers_is_dropped_from_the_queue(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embedserve.cache import remote as remote_mod

    monkeypatch.setattr(remote_mod, "ASK_EVERY", 1)  # every lookup the sampled one
    app, loader = _app(redis_server.url)
    started: list[int] = []  # batches the engine has begun (it records them only when done)
    loader.engine_kw = {"delay_per_batch": 0.5, "fail": lambda batch: started.append(len(batch))}
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        known = c.post("/api/embed", json={"model": "fake", "input": ["already in redis"]}).json()
        _flush(app)
        remote = app.state.embedserve.cache.remote
        for i in range(200):  # Redis has none of these: misses compute while it answers now
            remote.get_many([f"absent {i}"])
        assert remote.hit_rate < 1 / 16
        engine = loader.engines[0]
        ran, begun = sum(engine.batches), len(started)
        busy = threading.Thread(target=lambda: c.post(
            "/api/embed", json={"model": "fake", "input": ["keeps the engine busy"]}))
        busy.start()
        _wait_for(lambda: len(started) == begun + 1, 10)  # the engine is in its 0.5 s
        t0 = time.monotonic()
        hit = c.post("/api/embed", json={"model": "fake", "input": ["already in redis"]}).json()
        waited = time.monotonic() - t0
        busy.join()
        assert hit["embeddings"] == known["embeddings"]
        assert waited < 0.4  # answered by Redis while its queued copy waited behind the batch
        time.sleep(0.3)  # (had the copy not been dropped, the engine would have begun it now)
        assert len(started) == begun + 1 and sum(engine.batches) == ran + 1  # dropped, never run
        assert _metric(c, "embedserve_cache_redis_speculated_total") == 1
        fresh = c.post("/api/embed", json={"model": "fake", "input": ["a new text"]}).json()
        assert sum(engine.batches) == ran + 2 and len(fresh["embeddings"]) == 1
        assert 0 < _metric(c, "embedserve_cache_redis_hit_rate") < 1 / 16
