"""The library's Redis level against a real redis-server: writes leave the call, not the process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from rediskit import RedisServer

from embedserve.cache import EmbeddingCache
from embedserve.cache.remote import RedisTier
from embedserve.embedder import Embedder
from embedserve.engine.fake import FakeEngine

pytestmark = pytest.mark.redis

TEXTS = ["written in the background", "and flushed at exit", "written in the background"]


def test_a_process_that_exits_right_after_encode_still_leaves_its_vectors_in_redis(
    redis_server: RedisServer,
) -> None:
    script = textwrap.dedent(f"""
        from embedserve.cache import EmbeddingCache
        from embedserve.cache.remote import RedisTier
        from embedserve.embedder import Embedder
        from embedserve.engine.fake import FakeEngine
        tier = RedisTier({redis_server.url!r}, ttl=600, timeout=2.0)
        emb = Embedder.from_engine(FakeEngine(), cache=EmbeddingCache(0, tier))
        emb.encode({TEXTS!r})
    """)  # no flush, no close: the process just ends
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120, env=os.environ.copy())
    engine = FakeEngine()
    tier = RedisTier(redis_server.url, ttl=600, timeout=2.0)
    try:
        emb = Embedder.from_engine(engine, cache=EmbeddingCache(0, tier))
        out = emb.encode(TEXTS, normalize=False)
        assert sum(engine.batches) == 0  # both distinct texts came from Redis
        assert emb.cache is not None and emb.cache.hits["redis"] == 3
        ref = Embedder.from_engine(FakeEngine()).encode(TEXTS, normalize=False)
        assert out.tobytes() == ref.tobytes()
    finally:
        tier.close()


def test_after_many_misses_no_call_asks_redis_and_its_writes_probe_it_instead(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    from embedserve.cache import remote as remote_mod
    from embedserve.cache.keys import redis_key

    monkeypatch.setattr(remote_mod, "_FLUSH_EVERY", 60.0)  # probes go out at flush() only
    engine = FakeEngine()
    tier = RedisTier(redis_server.url, ttl=600, timeout=2.0)
    try:
        tier_cache = EmbeddingCache(0, tier)
        emb = Embedder.from_engine(engine, cache=tier_cache)
        known = [f"known text {i}" for i in range(64)]
        first = emb.encode(known, normalize=False)  # now in Redis (more than 8: asked first)
        assert tier.hit_rate > 1 / 16  # 64 misses seen: not yet enough to stop asking first
        for i in range(600):  # Redis has none of these (past 1/16 they stop asking it)
            emb.encode(f"never seen before {i}")
        assert tier.pending > 400  # the skipped ones' writes wait for the flusher, with probes
        tier.flush()
        assert tier.pending == 0 and tier.hit_rate < 1 / 32
        space = tier_cache.keyspace(engine.info)
        assert space is not None
        client = redis.Redis.from_url(redis_server.url)
        assert client.exists(redis_key(space.namespace + "never seen before 599")) == 1

        def no_asking(keys: object) -> None:
            raise AssertionError("a call asked Redis")

        monkeypatch.setattr(tier, "get_many", no_asking)
        ran, skipped = sum(engine.batches), tier.skipped
        out = [emb.encode([text], normalize=False) for text in known[:16]]
        assert sum(engine.batches) == ran + 16  # every one computed, none waited for Redis
        assert tier.skipped - skipped == 16 and emb.cache is not None
        assert emb.cache.hits["redis"] == 0
        assert b"".join(o.tobytes() for o in out) == first[:16].tobytes()
        monkeypatch.undo()
        tier.flush()  # their writes' probes find all 16 in Redis: the rate is past 1/16 again
        assert tier.hit_rate >= 1 / 16
        ran = sum(engine.batches)
        assert emb.encode([known[63]], normalize=False).tobytes() == first[63:].tobytes()
        assert sum(engine.batches) == ran and emb.cache.hits["redis"] == 1  # asked first: a hit
    finally:
        tier.close()


def test_probed_writes_beyond_the_bound_are_dropped_and_counted(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    import redis

    from embedserve.cache import remote as remote_mod
    from embedserve.cache.keys import redis_key, redis_write_raw, unpack

    monkeypatch.setattr(remote_mod, "_FLUSH_EVERY", 60.0)  # probes go out at flush() only
    monkeypatch.setattr(remote_mod, "_MAX_QUEUED", 5)
    tier = RedisTier(redis_server.url, ttl=600, timeout=2.0)
    try:
        vec = np.arange(4, dtype=np.float32).reshape(1, 4)
        ns = "embedserve:1:" + "0" * 32 + ":"  # (as keys.namespace makes one)
        for i in range(8):  # one-text writes as the library queues them: raw, packed when sent
            tier.put_later(((f"{ns}probe {i}", (vec, i)),), item=redis_write_raw, probe=True)
        assert tier.pending == 5 and tier.dropped_writes == 3
        tier.flush()
        assert tier.pending == 0
        client = redis.Redis.from_url(redis_server.url)
        stored = [client.get(redis_key(f"{ns}probe {i}")) for i in range(8)]
        assert [s is not None for s in stored] == [True] * 5 + [False] * 3
        back = unpack(stored[4], 4)  # type: ignore[arg-type]
        assert back is not None and back[1] == 4 and back[0].tobytes() == vec.tobytes()
    finally:
        tier.close()
