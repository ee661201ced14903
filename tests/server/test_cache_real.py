"""The cache with the real all-minilm model: a hit is bitwise the vector a fresh computation gives
for the exact tag, and the fp32 and int8 variants of the same weights never share entries."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from serverkit import serve

from embedserve.config import Settings
from embedserve.server.app import create_app
from embedserve.store.create import create_model
from embedserve.store.local import ModelStore

pytestmark = pytest.mark.slow

TEXTS = [
    "A man is playing a guitar.",
    "The weather is lovely today, warm and sunny.",
    "A man is playing a guitar.",
    "Quantised graphs trade a little accuracy for speed.",
]


@pytest.fixture(scope="module")
def home(real_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    home = tmp_path_factory.mktemp("cache-real") / "home"
    shutil.copytree(real_home, home, copy_function=link)
    create_model(ModelStore(home), "minilm-int8", source="all-minilm", quantize="int8")
    return home


@pytest.fixture(scope="module")
def urls(home: Path) -> Iterator[tuple[str, str]]:
    base = replace(Settings(), home=home, offline=True)
    with serve(create_app(replace(base, cache_mb=64))) as cached:
        with serve(create_app(replace(base, cache_mb=0))) as uncached:
            yield cached, uncached


def _embed(url: str, model: str) -> tuple[np.ndarray, int]:
    body = httpx.post(f"{url}/api/embed", json={"model": model, "input": TEXTS}, timeout=120)
    assert body.status_code == 200, body.text
    data = body.json()
    return np.array(data["embeddings"], dtype=np.float64), data["prompt_eval_count"]


def _hits(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("embedserve_cache_hits_total{")
    )


def test_hits_are_bitwise_fresh_computations_for_the_exact_tag(urls: tuple[str, str]) -> None:
    cached, uncached = urls
    fresh_fp32, tokens = _embed(uncached, "all-minilm")
    fresh_int8, _ = _embed(uncached, "minilm-int8")
    assert not np.array_equal(fresh_fp32, fresh_int8)  # the variants really differ

    miss, miss_tokens = _embed(cached, "all-minilm")
    hits_before = _hits(cached)
    hit, hit_tokens = _embed(cached, "all-minilm")
    assert _hits(cached) - hits_before == len(TEXTS)  # every input from the cache
    assert hit.tobytes() == miss.tobytes() == fresh_fp32.tobytes()  # bitwise, as JSON floats
    assert hit_tokens == miss_tokens == tokens

    # same weights digest, int8 graph: its own entries, never the fp32 vectors
    hits_before = _hits(cached)
    int8_first, _ = _embed(cached, "minilm-int8")
    assert _hits(cached) - hits_before == 0
    int8_hit, _ = _embed(cached, "minilm-int8")
    assert int8_hit.tobytes() == int8_first.tobytes() == fresh_int8.tobytes()
