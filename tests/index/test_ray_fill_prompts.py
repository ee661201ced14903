"""``index add --ray`` stores what a plain ``index add`` stores for a model with a document prompt:
the corpus job is asked for the prompt, and the vectors it did not return are computed with it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from embedserve.config import Settings
from embedserve.index.collection import Collection
from embedserve.ray import corpus, index_fill

from .conftest import make_encoder

DOCS = [{"id": "a", "text": "why is the sky blue"}, {"id": "b", "text": "the man plays the guitar"}]


def _with_prompts(enc: Any) -> Any:
    enc._engine.info = replace(enc._engine.info, prompts={
        "search_query": "search_query: ", "search_document": "search_document: "})
    return enc


def test_index_add_ray_applies_the_document_prompt(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=tmp_path / "home", offline=True)
    jobs: list[corpus.Job] = []

    def no_cluster(job: corpus.Job, settings: Settings, *, address: str | None) -> None:
        jobs.append(job)  # the job's shards are left empty: every vector comes from the fallback

    monkeypatch.setattr(corpus, "run", no_cluster)
    enc = _with_prompts(make_encoder())
    with Collection.open("plain", settings=settings, encoder=enc) as plain, \
            Collection.open("viaray", settings=settings, encoder=enc) as viaray:
        plain.add(DOCS)
        index_fill.add(viaray, DOCS, settings, address=None)
        assert [j.prompt_name for j in jobs] == ["search_document"]
        for d in DOCS:
            want = {h.id: h.score for h in plain.query(d["text"], top_k=2)}
            got = {h.id: h.score for h in viaray.query(d["text"], top_k=2)}
            assert got.keys() == want.keys()
            np.testing.assert_allclose([got[k] for k in want], list(want.values()), atol=1e-6)


def test_precomputed_answers_only_its_prompt() -> None:
    enc = _with_prompts(make_encoder())
    table = {"x": np.ones(enc.info.dim, np.float32)}
    pre = index_fill.Precomputed(enc, table, "search_document")
    np.testing.assert_array_equal(pre.encode(["x"], prompt_name="search_document")[0], table["x"])
    other = pre.encode(["x"], prompt_name="search_query")[0]  # not the job's prompt: the model's
    np.testing.assert_allclose(other, enc.encode(["x"], prompt_name="search_query")[0], atol=1e-6)
