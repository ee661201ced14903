"""The embedding cache in the server (fake engine): hits skip the batcher, counts and shapes stay."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from serverkit import FakeLoader, FakeStore, serve, settings

from embedserve.server.app import create_app


@pytest.fixture
def served() -> Iterator[tuple[httpx.Client, FakeLoader]]:
    store = FakeStore(("fake",))
    loader = FakeLoader(store)
    with serve(create_app(settings(cache_mb=16), loader=loader, store=store)) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client, loader


def _metric(client: httpx.Client, name: str) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_repeated_inputs_are_answered_from_the_cache(served) -> None:
    client, loader = served
    texts = ["the sky is blue", "grass is green", "the sky is blue", "snow is white"]
    first = client.post("/api/embed", json={"model": "fake", "input": texts}).json()
    engine = loader.engines[0]
    assert sum(engine.batches) == 3  # the repeated input is computed once
    second = client.post("/api/embed", json={"model": "fake", "input": texts}).json()
    assert sum(engine.batches) == 3  # nothing reached the batcher
    assert second["embeddings"] == first["embeddings"]
    assert second["prompt_eval_count"] == first["prompt_eval_count"] > 0  # tokens still counted
    assert _metric(client, "embedserve_cache_hits_total") == 4
    assert _metric(client, "embedserve_cache_misses_total") == 4  # the repeat missed too
    assert _metric(client, "embedserve_cache_entries") == 3
    assert _metric(client, "embedserve_cache_bytes") > 3 * 32 * 4


def test_only_misses_are_queued_and_options_change_the_key(served) -> None:
    client, loader = served
    client.post("/api/embed", json={"model": "fake", "input": ["alpha beta", "gamma"]})
    engine = loader.engines[0]
    engine.batches.clear()
    mixed = client.post("/api/embed", json={"model": "fake", "input": ["gamma", "delta", "alpha beta"]})
    assert sum(engine.batches) == 1  # "delta" only
    fresh = client.post("/api/embed", json={"model": "fake", "input": ["delta"]}).json()
    assert mixed.json()["embeddings"][1] == fresh["embeddings"][0]
    # a smaller num_ctx cuts texts differently: its own entries
    engine.batches.clear()
    client.post("/api/embed", json={"model": "fake", "input": ["gamma"], "options": {"num_ctx": 3}})
    assert sum(engine.batches) == 1
    # dimensions are applied after the cache: a hit, re-normalised to 8 values
    engine.batches.clear()
    short = client.post("/api/embed", json={"model": "fake", "input": ["gamma"], "dimensions": 8})
    assert sum(engine.batches) == 0
    vec = np.array(short.json()["embeddings"][0])
    assert vec.shape == (8,) and abs(np.linalg.norm(vec) - 1) < 1e-6


def test_openai_route_and_collections_share_the_cache(served) -> None:
    client, loader = served
    client.post("/api/embed", json={"model": "fake", "input": ["shared text one"]})
    engine = loader.engines[0]
    engine.batches.clear()
    out = client.post("/v1/embeddings", json={"model": "fake", "input": "shared text one"})
    assert out.status_code == 200 and sum(engine.batches) == 0
    assert out.json()["usage"]["prompt_tokens"] == 5


def test_truncate_false_over_long_input_still_fails_with_its_index(served) -> None:
    client, _ = served
    long = " ".join(["word"] * 100)  # over the fake's 64 tokens
    client.post("/api/embed", json={"model": "fake", "input": ["ok", long]})  # cached, truncated
    r = client.post("/api/embed", json={"model": "fake", "input": ["ok", long], "truncate": False})
    assert r.status_code == 400
    assert "input length exceeds" in r.json()["error"] or "input 1" in r.json()["error"]


def test_cache_off_computes_every_time() -> None:
    store = FakeStore(("fake",))
    loader = FakeLoader(store)
    with serve(create_app(settings(cache_mb=0), loader=loader, store=store)) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(2):
                client.post("/api/embed", json={"model": "fake", "input": ["same", "texts"]})
            assert sum(loader.engines[0].batches) == 4
            assert "embedserve_cache_hits_total" not in client.get("/metrics").text
