"""The embedding cache without a server: keys, the byte-bounded LRU, and the library's Embedder."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import replace

import numpy as np
import pytest

from embedserve.cache import EmbeddingCache, open_cache
from embedserve.cache.keys import cache_keys, namespace, pack, redis_key, unpack
from embedserve.cache.memory import ENTRY_OVERHEAD, MemoryLRU
from embedserve.cache.tiered import STAGED_MAX
from embedserve.config import Settings
from embedserve.embedder import Embedder
from embedserve.engine.base import EngineInfo
from embedserve.engine.fake import FakeEngine
from embedserve.errors import CacheError, InputTooLong

INFO = EngineInfo("m:latest", 32, 64, "mean", True, digest="a" * 64, variant="fp32-g5")


def test_namespace_covers_every_option_that_changes_the_vector() -> None:
    base = namespace(INFO)
    assert base is not None
    changed = [
        namespace(replace(INFO, digest="b" * 64)),
        namespace(replace(INFO, variant="int8-g5")),  # same weights, int8 graph
        namespace(replace(INFO, variant="fp32-g6")),  # a new graph format
        namespace(replace(INFO, pooling="cls")),
        namespace(INFO, window=16),  # num_ctx
        namespace(INFO, truncate=False),
        namespace(INFO, prompt="query: "),
    ]
    assert len({base, *changed}) == len(changed) + 1
    # the tag's name is not part of it: two tags of the same weights share entries
    assert namespace(replace(INFO, name="alias:v1")) == base
    # a window at or above the model's is the model's window
    assert namespace(INFO, window=64) == namespace(INFO, window=500) == base
    assert namespace(replace(INFO, digest="")) is None  # nothing to key on


def test_keys_hold_the_text_redis_keys_its_hash_and_values_round_trip() -> None:
    ns = namespace(INFO)
    assert ns is not None
    a, b, a2 = cache_keys(ns, ["hello", "hello ", "hello"])
    assert a == a2 != b and a == ns + "hello"
    # in Redis: the namespace and the text's sha256 (the key format earlier versions wrote)
    assert redis_key(a) == ns + hashlib.sha256(b"hello").hexdigest()
    assert redis_key(b) != redis_key(a) and redis_key(a2) == redis_key(a)
    text = "caf\u00e9 \ud800 " + ":" * 40  # non-ASCII, a lone surrogate (JSON allows it), colons
    assert redis_key(ns + text) == ns + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    vec = np.random.default_rng(1).standard_normal(32).astype(np.float32)
    back = unpack(pack(vec, 7), 32)
    assert back is not None
    assert back[1] == 7 and back[0].tobytes() == vec.tobytes()
    assert unpack(pack(vec, 7), 16) is None  # a value of another size is a miss, not garbage


def test_memory_lru_is_bounded_in_bytes_and_evicts_least_recent() -> None:
    value = b"x" * 1000
    one = len("k0") + len(value) + ENTRY_OVERHEAD
    lru = MemoryLRU(3 * one)
    lru.put_many([("k0", value), ("k1", value), ("k2", value)])
    assert len(lru) == 3 and lru.bytes == 3 * one
    assert lru.get_many(["k0"]) == [value]  # k0 is now the most recent
    lru.put_many([("k3", value)])
    assert lru.get_many(["k0", "k1", "k2", "k3"]) == [value, None, value, value]
    assert lru.bytes <= lru.max_bytes and lru.evictions == 1
    lru.put_many([("big", b"y" * 10 * one)])  # larger than the whole cache: not stored
    assert lru.get_many(["big"]) == [None] and len(lru) == 3


def test_memory_lru_counts_a_text_key_at_no_less_than_its_size_in_memory() -> None:
    lru = MemoryLRU(1 << 20)
    key = "ns:" + "\u4e2d" * 1000  # 1,003 characters, 2 bytes each in CPython
    lru.put_many([(key, b"v")])
    assert lru.bytes >= sys.getsizeof(key) + 1
    assert lru.bytes == 4 * len(key) + 1 + ENTRY_OVERHEAD
    lru.put_many([(key, b"v")])  # the same key again: counted once
    assert lru.bytes == 4 * len(key) + 1 + ENTRY_OVERHEAD
    lru.put_many([("ascii", b"v")])
    assert lru.bytes == 4 * len(key) + 1 + len("ascii") + 1 + 2 * ENTRY_OVERHEAD


def _embedder(engine: FakeEngine, mb: int = 8) -> Embedder:
    cache = open_cache(Settings(cache_mb=mb))
    assert cache is not None
    return Embedder.from_engine(engine, cache=cache)


def test_embedder_hits_skip_the_engine_and_are_bitwise_equal() -> None:
    engine = FakeEngine()
    emb = _embedder(engine)
    texts = ["the cat sat", "a dog ran", "the cat sat", "birds fly south"]
    first = emb.encode(texts, normalize=False)
    assert sum(engine.batches) == 3  # the repeated text is computed once
    again = emb.encode(texts, normalize=False)
    assert sum(engine.batches) == 3  # all hits: the engine ran nothing
    assert again.tobytes() == first.tobytes()
    fresh = Embedder.from_engine(FakeEngine()).encode(texts, normalize=False)
    assert again.tobytes() == fresh.tobytes()
    # normalisation and dimensions are applied after the cache
    np.testing.assert_allclose(np.linalg.norm(emb.encode(texts, dimensions=8), axis=1), 1, 1e-6)
    assert emb.cache is not None and emb.cache.hits["memory"] >= 8


def test_embedder_computes_only_the_misses() -> None:
    engine = FakeEngine()
    emb = _embedder(engine)
    emb.encode(["one", "two"])
    engine.batches.clear()
    out = emb.encode(["one", "three", "two", "four"])
    assert sum(engine.batches) == 2  # "three" and "four"
    ref = Embedder.from_engine(FakeEngine()).encode(["one", "three", "two", "four"])
    assert out.tobytes() == ref.tobytes()


def test_one_text_misses_are_staged_seen_at_once_and_settled_into_the_lru_together() -> None:
    engine = FakeEngine()
    emb = _embedder(engine)
    cache = emb.cache
    assert cache is not None and cache.memory is not None
    first = emb.encode("staged text", normalize=False)
    assert len(cache.memory) == 0  # a one-text miss packs nothing and takes no lock
    ran = sum(engine.batches)
    again = emb.encode(["staged text"], normalize=False)[0]
    assert sum(engine.batches) == ran and cache.hits["memory"] == 1  # seen at once
    assert again.tobytes() == first.tobytes()
    # a second Embedder over the same cache and engine sees the same entries
    other = Embedder.from_engine(engine, cache=cache)
    assert other.encode("staged text", normalize=False).tobytes() == first.tobytes()
    assert sum(engine.batches) == ran
    # a lookup of several texts settles them first: the staged text is a hit there too
    both = emb.encode(["staged text", "a new one"], normalize=False)
    assert sum(engine.batches) == ran + 1 and len(cache.memory) == 2
    assert both[0].tobytes() == first.tobytes()
    texts = [f"one text at a time {i}" for i in range(STAGED_MAX)]
    for text in texts:
        emb.encode(text)
    assert len(cache.memory) == 2 + STAGED_MAX  # the STAGED_MAX-th miss settled them all
    space = emb._keyspaces[True]
    assert space is not None  # in the LRU in the order they were computed: the oldest first out
    assert list(cache.memory._data)[2:] == [space.namespace + t for t in texts]
    ref = Embedder.from_engine(FakeEngine()).encode(texts, normalize=False)
    engine.batches.clear()
    assert emb.encode(texts, normalize=False).tobytes() == ref.tobytes()
    assert not engine.batches
    memory = cache.memory
    assert memory.bytes == sum(len(k) + len(v) + ENTRY_OVERHEAD for k, v in memory._data.items())


def test_a_raw_one_text_vector_is_the_callers_own_to_write_to() -> None:
    emb = _embedder(FakeEngine())
    ref = Embedder.from_engine(FakeEngine()).encode("mutable", normalize=False)
    for i in range(3):  # a miss (staged), a staged hit, then (settled) an LRU hit
        out = emb.encode("mutable", normalize=False)
        assert out.flags.writeable and out.tobytes() == ref.tobytes()
        out[:] = 0  # does not reach the cache
        space = emb._keyspaces[True]
        assert space is not None and len(space._staged) == (i < 2)
        if i == 1:
            space.settle()


def test_one_text_calls_from_many_threads_keep_the_lru_exact() -> None:
    import threading

    engine = FakeEngine()
    emb = _embedder(engine, mb=64)
    texts = [f"text number {i}" for i in range(300)]
    ref = Embedder.from_engine(FakeEngine()).encode(texts, normalize=False)
    bad: list[str] = []

    def run(offset: int) -> None:
        for j in range(600):
            i = (offset + 7 * j) % len(texts)
            if emb.encode(texts[i], normalize=False).tobytes() != ref[i].tobytes():
                bad.append(texts[i])

    threads = [threading.Thread(target=run, args=(k * 37,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad
    emb.encode(["settle", "now"])
    memory = emb.cache.memory  # type: ignore[union-attr]
    assert memory is not None and len(memory) == len(texts) + 2
    assert memory.bytes == sum(len(k) + len(v) + ENTRY_OVERHEAD for k, v in memory._data.items())


def test_truncate_is_part_of_the_key_and_errors_name_the_callers_index() -> None:
    engine = FakeEngine(max_tokens=8)
    emb = _embedder(engine)
    long = " ".join(["word"] * 20)
    emb.encode(["short", long])  # truncated, cached under truncate=True
    emb.encode(["short"], truncate=False)
    with pytest.raises(InputTooLong) as info:  # not answered from the truncate=True entry
        emb.encode(["short", long], truncate=False)
    assert info.value.index == 1  # its index in the call, though "short" was a hit


def test_cache_off_and_lru_bound_from_settings() -> None:
    assert open_cache(Settings(cache_mb=0)) is None
    cache = open_cache(Settings(cache_mb=1))
    assert isinstance(cache, EmbeddingCache) and cache.memory is not None
    emb = Embedder.from_engine(FakeEngine(dim=256), cache=cache)
    emb.encode([f"text number {i}" for i in range(2000)])  # ~2.3 MB of entries into 1 MiB
    assert 0 < cache.memory.bytes <= 1024 * 1024
    assert cache.memory.evictions > 0


def test_settings_read_the_cache_environment() -> None:
    s = Settings.from_env(
        {
            "EMBEDSERVE_CACHE_MB": "64",
            "EMBEDSERVE_REDIS_URL": "redis://127.0.0.1:1/0",
            "EMBEDSERVE_CACHE_TTL": "1h",
            "EMBEDSERVE_REDIS_TIMEOUT": "0.1",
        }
    )
    assert (s.cache_mb, s.redis_url, s.cache_ttl, s.redis_timeout) == (
        64, "redis://127.0.0.1:1/0", 3600.0, 0.1,
    )
    assert Settings.from_env({}).cache_mb > 0  # on by default


def test_a_malformed_redis_url_is_a_clear_error() -> None:
    pytest.importorskip("redis")
    with pytest.raises(CacheError, match="EMBEDSERVE_REDIS_URL"):
        open_cache(Settings(redis_url="http://nowhere"))


@pytest.mark.parametrize("module", ["redis", "hiredis"])
def test_a_redis_url_without_the_client_or_its_parser_names_the_extra(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(CacheError, match=r"pip install 'embedserve\[redis\]'"):
        open_cache(replace(Settings(), redis_url="redis://127.0.0.1:1/0"))


def test_serve_with_a_malformed_redis_url_is_one_line_and_exit_1(
    home, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("redis")
    from clikit import run

    monkeypatch.setenv("EMBEDSERVE_REDIS_URL", "http://not-redis")
    code, _, err = run(capsys, "serve", "--no-pull", "--port", "0")
    assert code == 1
    assert err.strip().count("\n") == 0 and "EMBEDSERVE_REDIS_URL" in err


def test_sentence_vectors_made_with_token_vectors_are_cached_and_a_prompt_runs_twice() -> None:
    engine = FakeEngine()
    emb = _embedder(engine)
    texts = ["one chunk", "two chunks", "one chunk"]
    dense, tokens = emb.encode_with_tokens(texts)
    assert sum(engine.batches) == 3  # one run gives both (the repeated text computed twice: no lookup)
    assert len(tokens) == 3 and all(np.allclose(np.linalg.norm(t, axis=1), 1) for t in tokens)
    engine.batches.clear()
    assert emb.encode(texts).tobytes() == dense.tobytes() and not engine.batches  # cached
    # a model whose documents get a prompt: the token vectors are of the text as given, so two runs
    prompted = FakeEngine()
    prompted.info = replace(prompted.info, prompts={"document": "passage: "},
                            default_prompt_name="document")
    pe = Embedder.from_engine(prompted)
    d2, t2 = pe.encode_with_tokens(["a text"])
    assert d2.tobytes() == pe.encode(["a text"]).tobytes()
    assert t2[0].tobytes() == pe.encode(["a text"], output="token")[0].tobytes()
    assert d2.tobytes() != Embedder.from_engine(FakeEngine()).encode(["a text"]).tobytes()
