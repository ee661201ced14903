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


def test_after_many_misses_one_lookup_in_8_asks_redis_while_computing_and_hits_turn_that_off(
    redis_server: RedisServer,
) -> None:
    import redis

    from embedserve.cache import remote as remote_mod

    def mgets() -> int:
        stats = redis.Redis.from_url(redis_server.url).info("commandstats")
        return int(stats.get("cmdstat_mget", {}).get("calls", 0))

    engine = FakeEngine()
    tier = RedisTier(redis_server.url, ttl=600, timeout=2.0)
    try:
        emb = Embedder.from_engine(engine, cache=EmbeddingCache(0, tier))
        known = [f"known text {i}" for i in range(64)]
        first = emb.encode(known, normalize=False)  # now in Redis (more than 8: asked first)
        assert tier.hit_rate > 1 / 16  # 64 misses seen: not yet enough to stop asking first
        for i in range(600):  # Redis has none of these (past 1/16, one in 8 asks it)
            emb.encode(f"never seen before {i}")
        assert tier.hit_rate < 1 / 32  # two hits will not lift it past 1/16
        tier.flush()
        asked, ran, skipped = mgets(), sum(engine.batches), tier.skipped
        out = [emb.encode([text], normalize=False) for text in known[:16]]
        assert mgets() - asked == 16 // remote_mod.ASK_EVERY  # the others did not ask
        assert sum(engine.batches) == ran + 16  # every one computed, none waited for Redis
        assert emb.cache is not None and emb.cache.hits["redis"] == 16 // remote_mod.ASK_EVERY
        assert b"".join(o.tobytes() for o in out) == first[:16].tobytes()
        assert tier.skipped - skipped == 16 - 16 // remote_mod.ASK_EVERY
        i = 16
        while tier.hit_rate < 1 / 16:  # each sampled hit raises the rate; a few, and all ask first
            emb.encode([known[i]])
            i += 1
        assert i <= 56
        ran = sum(engine.batches)
        assert emb.encode([known[63]], normalize=False).tobytes() == first[63:].tobytes()
        assert sum(engine.batches) == ran  # a hit, answered by Redis alone
    finally:
        tier.close()
