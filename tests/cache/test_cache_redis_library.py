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


def test_after_many_misses_a_miss_computes_while_redis_answers_and_hits_turn_that_off(
    redis_server: RedisServer,
) -> None:
    engine = FakeEngine()
    tier = RedisTier(redis_server.url, ttl=600, timeout=2.0)
    try:
        emb = Embedder.from_engine(engine, cache=EmbeddingCache(0, tier))
        known = [f"known text {i}" for i in range(8)]
        first = emb.encode(known, normalize=False)  # now in Redis
        assert not tier.speculate()  # nothing seen yet: a miss asks Redis first
        for i in range(200):  # Redis has none of these
            emb.encode(f"never seen before {i}")
        assert tier.speculate() and tier.hit_rate < 1 / 16
        tier.flush()
        ran = sum(engine.batches)
        again = emb.encode([known[0]], normalize=False)
        assert sum(engine.batches) == ran + 1  # computed while Redis answered...
        assert emb.cache is not None and emb.cache.hits["redis"] == 1  # ...which had it
        assert again.tobytes() == first[:1].tobytes()
        hits = 1
        while tier.speculate():  # each hit raises the rate; a few and misses wait for Redis again
            emb.encode([known[hits]])
            hits += 1
        assert hits <= 5
        ran = sum(engine.batches)
        assert emb.encode([known[7]], normalize=False).tobytes() == first[7:].tobytes()
        assert sum(engine.batches) == ran  # a hit, answered by Redis alone
    finally:
        tier.close()
