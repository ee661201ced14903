"""A cross-encoder imported with ``create --from DIR`` scores exactly like sentence-transformers.

Tiny random-weight ``BertForSequenceClassification`` folders in the ms-marco-MiniLM layout
(:func:`tinymodels.make_tiny_cross_encoder`), compared with ``CrossEncoder.predict`` on the same
folder: |score difference| <= 1e-4, with pairs long enough to be cut longest-first, with the
default sigmoid and with the Identity activation ms-marco's config names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedserve.config import Settings
from embedserve.reranker import Reranker
from embedserve.store.local import ModelStore
from tinymodels import make_tiny_cross_encoder

pytestmark = [pytest.mark.reference, pytest.mark.slow]

QUERY = "why is the sky blue?"
DOCS = [
    "the sky is blue because of light",
    "a dog runs fast in the night",
    "search the library index for a long text about books and music " * 3,  # cut to the window
    "blue",
    "",
]


@pytest.mark.parametrize("activation", [None, "torch.nn.modules.linear.Identity"])
def test_scores_match_sentence_transformers_cross_encoder(tmp_path: Path, activation: str | None) -> None:
    pytest.importorskip("torch")
    st = pytest.importorskip("sentence_transformers")
    folder = make_tiny_cross_encoder(tmp_path / "ce", activation=activation)
    settings = Settings(home=tmp_path / "home", offline=True)
    model = ModelStore(settings.home).create("tiny-rerank", source=folder)
    assert model.kind == "reranker" and model.max_tokens == 40
    reranker = Reranker("tiny-rerank", settings=settings)
    pairs = [(QUERY, d) for d in DOCS] + [(d, QUERY) for d in DOCS[:3]]
    ours = reranker.predict(pairs, batch_tokens=64)  # several batches
    theirs = st.CrossEncoder(str(folder), device="cpu").predict(pairs)
    assert np.abs(ours - np.asarray(theirs)).max() <= 1e-4, (ours, theirs)
    ranked = reranker.rank(QUERY, DOCS, top_n=3, return_documents=True)
    assert [r.index for r in ranked] == list(np.argsort(-np.asarray(theirs[:5]), kind="stable")[:3])
    assert ranked[0].document == DOCS[ranked[0].index]
