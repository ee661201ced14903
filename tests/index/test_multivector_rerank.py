"""Collections: multivector mode (token vectors beside the dense one, MaxSim re-scoring) and
``query(..., rerank=MODEL, candidates=N)`` with a real tiny cross-encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedserve.config import Settings
from embedserve.errors import CollectionError
from embedserve.index import multivector
from embedserve.index.collection import Collection
from embedserve.late_interaction import maxsim_batch
from embedserve.reranker import Reranker
from embedserve.store.local import ModelStore
from .conftest import make_encoder
from tinymodels import make_tiny_cross_encoder

DOCS = [
    {"id": "sky", "text": "the sky is blue because air scatters blue light"},
    {"id": "dog", "text": "a dog runs fast in the park at night"},
    {"id": "music", "text": "the man plays the guitar and the music is loud"},
    {"id": "books", "text": "the library holds books about music and the sky"},
]


@pytest.mark.parametrize("codec", ["int8", "binary", "float32"])
def test_multivector_maxsim_rescoring(settings: Settings, codec: str) -> None:
    enc = make_encoder()
    with Collection.open("mv", settings=settings, encoder=enc) as col:
        col.add(DOCS[:2])  # before the mode is on: vectors made on first use
        store = multivector.enable(col, codec)
        col.add(DOCS[2:])
        assert store.stats()["chunks"] == 2
        hits = col.query("the sky and music", top_k=3, rerank="maxsim", candidates=4)
        assert store.stats()["chunks"] == 4  # the older chunks got theirs on first use
        q = enc.encode(["the sky and music"], output="token", role="query")[0]
        d = enc.encode([x["text"] for x in DOCS], output="token")
        want = maxsim_batch(q, d)
        order = [DOCS[i]["id"] for i in np.argsort(-want, kind="stable")[:3]]
        tol = {"float32": 1e-5, "int8": 0.05, "binary": 1.0}[codec]
        if codec != "binary":  # binary re-scores asymmetrically: its own scale
            assert [h.id for h in hits] == order
        for h in hits:
            ref = want[[x["id"] for x in DOCS].index(h.id)]
            assert abs(h.score - ref) <= tol * max(1.0, abs(ref)), (h.id, h.score, ref)
        # a changed text is re-embedded: its stale token vectors are never used
        col.add([{"id": "dog", "text": "the sky at night is dark blue"}])
        again = col.query("the sky and music", top_k=4, rerank="maxsim", candidates=4)
        dog = next(h for h in again if h.id == "dog")
        fresh = maxsim_batch(q, enc.encode(["the sky at night is dark blue"], output="token"))[0]
        assert abs(dog.score - fresh) <= tol * max(1.0, abs(fresh))


def test_multivector_errors(settings: Settings) -> None:
    with Collection.open("plain", settings=settings, encoder=make_encoder()) as col:
        col.add(DOCS)
        with pytest.raises(CollectionError, match="not in multivector mode"):
            col.query("sky", rerank="maxsim")
        with pytest.raises(CollectionError, match="candidates must be a positive integer"):
            col.query("sky", rerank="maxsim", candidates=0)
        with pytest.raises(CollectionError, match="unknown multivector codec"):
            multivector.enable(col, "int4")
        multivector.enable(col, "int8")
        with pytest.raises(CollectionError, match="codec is int8, not binary"):
            multivector.enable(col, "binary")


def test_query_rerank_with_a_cross_encoder(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", offline=True)
    ModelStore(settings.home).create("tiny-rerank", source=make_tiny_cross_encoder(tmp_path / "ce"))
    with Collection.open("rr", settings=settings, encoder=make_encoder()) as col:
        col.add(DOCS)
        dense = col.query("why is the sky blue", top_k=4)
        hits = col.query("why is the sky blue", top_k=2, rerank="tiny-rerank", candidates=4)
    scores = Reranker("tiny-rerank", settings=settings).score("why is the sky blue",
                                                               [h.text for h in dense])
    best = [dense[i].id for i in np.argsort(-scores, kind="stable")[:2]]
    assert [h.id for h in hits] == best
    assert hits[0].score == pytest.approx(float(scores.max()), abs=1e-5)
