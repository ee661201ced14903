"""The tier's own connections (not redis-py's command path) against a real redis-server: never
shared between threads, and never reused after a failure that could leave replies unread."""

from __future__ import annotations

import threading
import time

import pytest
from rediskit import RedisServer

from embedserve.cache.remote import RedisTier

pytestmark = pytest.mark.redis


def test_threads_calling_at_once_each_get_their_own_replies(redis_server: RedisServer) -> None:
    import redis

    redis.Redis.from_url(redis_server.url).mset({f"k:{t}:{i}": f"{t}/{i}" for t in range(6) for i in range(50)})
    tier = RedisTier(redis_server.url, ttl=60, timeout=2.0)
    wrong: list[tuple[int, object]] = []
    start = threading.Barrier(6)

    def caller(t: int) -> None:
        start.wait()
        for round_ in range(200):
            keys = [f"k:{t}:{(round_ + j) % 50}" for j in range(3)]
            got = tier.get_many(keys)
            want = [f"{t}/{(round_ + j) % 50}".encode() for j in range(3)]
            if got != want:
                wrong.append((t, got))

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(6)]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=60)
    finally:
        tier.close()
    assert not wrong, wrong[:3]  # a shared connection hands one thread another's reply
    assert tier.errors == 0


def test_an_error_reply_inside_a_pipeline_retires_its_connection(redis_server: RedisServer) -> None:
    """A pipelined write whose first SET is refused leaves the other replies unread on that
    connection; reusing it would answer the next lookup with a stale write reply."""
    import redis

    admin = redis.Redis.from_url(redis_server.url)
    admin.set("k:present", b"value")
    tier = RedisTier(redis_server.url, ttl=60, timeout=2.0)
    try:
        assert tier.get_many(["k:present"]) == [b"value"]  # the tier now holds an idle connection
        admin.config_set("maxmemory", "1")
        admin.config_set("maxmemory-policy", "noeviction")  # every SET: -OOM
        tier.put_many([("k:a", b"1"), ("k:b", b"2"), ("k:c", b"3")])
        assert tier.errors == 1 and not tier.up
        admin.config_set("maxmemory", "0")
        time.sleep(0.6)  # past the first back-off
        assert tier.get_many(["k:present", "k:a"]) == [b"value", None]
        assert tier.up
        tier.put_many([("k:a", b"1"), ("k:b", b"2")])
        assert tier.get_many(["k:b", "k:a", "k:present"]) == [b"2", b"1", b"value"]
        assert tier.errors == 1
    finally:
        tier.close()
