"""The server's lookup path: ``RedisTier.get_many_async`` through redis.asyncio, on the event loop."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from rediskit import RedisServer

from embedserve.cache.remote import RedisTier

pytestmark = pytest.mark.redis


def _sync_client_broken(tier: RedisTier) -> None:
    """Make the sync client unusable, so only the asyncio path can answer."""

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("the server's lookup must not use the sync client")

    tier._client.mget = refuse  # type: ignore[method-assign]


def test_async_lookup_answers_from_redis_on_the_loop_without_the_sync_client(
    redis_server: RedisServer,
) -> None:
    import redis

    redis.Redis.from_url(redis_server.url).mset({"k:a": b"one", "k:b": b"two"})
    tier = RedisTier(redis_server.url, ttl=60, timeout=1.0)
    _sync_client_broken(tier)
    threads: list[str] = []

    async def run() -> list[list[bytes | None]]:
        threads.append(threading.current_thread().name)
        first = await tier.get_many_async(["k:a", "k:missing", "k:b"])
        many = await asyncio.gather(*(tier.get_many_async(["k:b", "k:a"]) for _ in range(8)))
        await tier.aclose()
        return [first, *many]

    try:
        results = asyncio.run(run())
    finally:
        tier.close()
    assert results[0] == [b"one", None, b"two"]
    assert all(r == [b"two", b"one"] for r in results[1:])
    assert tier.errors == 0 and tier.up
    assert threads == ["MainThread"]


def test_async_lookup_survives_a_stall_and_an_outage_with_one_warning(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    caplog.set_level(logging.WARNING, logger="embedserve.cache")
    redis.Redis.from_url(redis_server.url).set("k:a", b"one")
    tier = RedisTier(redis_server.url, ttl=60, timeout=0.2)
    _sync_client_broken(tier)
    port = redis_server.port

    async def run() -> dict[str, object]:
        seen: dict[str, object] = {"before": await tier.get_many_async(["k:a"])}
        blocker = threading.Thread(
            target=lambda: redis.Redis.from_url(redis_server.url).execute_command("DEBUG", "SLEEP", 2)
        )
        blocker.start()
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        seen["stalled"] = await tier.get_many_async(["k:a"])  # bounded by the 0.2 s timeout
        seen["stall_s"] = time.monotonic() - t0
        seen["skipped"] = [await tier.get_many_async(["k:a"]) for _ in range(20)]  # backing off
        await asyncio.to_thread(blocker.join)
        redis_server.kill()
        await asyncio.sleep(0.6)  # past the first back-off: the next call tries the dead server
        seen["down"] = [await tier.get_many_async(["k:a"]) for _ in range(5)]
        revived = RedisServer(port=port).start()
        try:
            await asyncio.to_thread(redis.Redis.from_url(revived.url).set, "k:a", b"again")
            deadline = time.monotonic() + 10
            while True:
                got = await tier.get_many_async(["k:a"])
                if got == [b"again"] or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            seen["back"] = got
        finally:
            revived.close()
        await tier.aclose()
        return seen

    try:
        seen = asyncio.run(run())
    finally:
        tier.close()
    assert seen["before"] == [b"one"]
    assert seen["stalled"] == [None] and seen["stall_s"] < 1.5  # not Redis's 2 s stall
    assert seen["skipped"] == [[None]] * 20
    assert seen["down"] == [[None]] * 5
    assert seen["back"] == [b"again"]
    assert tier.errors >= 2
    down = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(down) == 1  # one for the whole outage (stall, then kill), never one per call
    assert any("is back" in r.getMessage() for r in caplog.records)
