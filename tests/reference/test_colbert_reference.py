"""A ColBERT checkpoint imported with ``create --from DIR`` scores like colbert-ai itself.

The checkpoint is a tiny random-weight one in the colbert-ir/colbertv2.0 layout
(:func:`tinymodels.make_tiny_colbert`); colbert-ai (the ``reference`` extra) loads the same folder
with its own ``Checkpoint``: its query/document tokenizers (markers, [MASK] expansion, the
punctuation skiplist) and Hugging Face's BERT. MaxSim of every query against every document must
agree within 1e-4, token vectors within 1e-4 too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedserve.config import Settings
from embedserve.embedder import Embedder
from embedserve.late_interaction import maxsim_matrix
from embedserve.reranker import Reranker
from embedserve.store.local import ModelStore
from tinymodels import make_tiny_colbert

pytestmark = [pytest.mark.reference, pytest.mark.slow]

QUERIES = ["why is the sky blue?", "a dog runs fast", "what is the library index for a book"]
DOCS = [
    "the sky is blue, because of light.",
    "the cat plays music fast fast fast; runs!",
    "search the library index for a long text about books and music and more words here",
    "dog",
]


def _colbert_ai(folder: Path) -> Any:
    """colbert-ai's Checkpoint for ``folder`` (with a shim for transformers >= 5, whose loader
    wants attributes colbert-ai's HF_ColBERT does not set)."""
    pytest.importorskip("torch")
    pytest.importorskip("colbert")
    import colbert.modeling.base_colbert as base_colbert
    import colbert.modeling.hf_colbert as hf_colbert

    original = hf_colbert.class_factory

    def class_factory(name: str) -> Any:
        cls = original(name)
        cls._keys_to_ignore_on_load_unexpected = {r"cls"}
        init = cls.__init__

        def __init__(self: Any, config: Any, colbert_config: Any) -> None:
            init(self, config, colbert_config)
            self.all_tied_weights_keys = {}

        cls.__init__ = __init__
        return cls

    hf_colbert.class_factory = class_factory
    base_colbert.class_factory = class_factory
    os.environ.setdefault("COLBERT_LOAD_TORCH_EXTENSION_VERBOSE", "False")
    from colbert.infra import ColBERTConfig
    from colbert.modeling.checkpoint import Checkpoint

    return Checkpoint(str(folder), colbert_config=ColBERTConfig.load_from_checkpoint(str(folder)))


@pytest.mark.parametrize("attend", [False, True])
def test_maxsim_matches_colbert_ai(tmp_path: Path, attend: bool) -> None:
    folder = make_tiny_colbert(tmp_path / "colbert", attend_to_mask_tokens=attend)
    settings = Settings(home=tmp_path / "home", offline=True)
    ModelStore(settings.home).create("tiny-colbert", source=folder)
    emb = Embedder("tiny-colbert", settings=settings)
    assert emb.info.kind == "colbert" and emb.dim == 16
    q = emb.encode(QUERIES, output="token", role="query")
    d = emb.encode(DOCS, output="token")
    assert all(x.shape == (12, 16) for x in q)  # query_maxlen rows: [MASK] expansion

    ck = _colbert_ai(folder)
    ref_q = [x.numpy() for x in ck.queryFromText(QUERIES)]
    ref_d = ck.docFromText(DOCS, keep_dims=False)
    ref_d = [x.numpy() for x in (ref_d[0] if isinstance(ref_d, tuple) else ref_d)]
    for ours, theirs in zip(q + d, ref_q + ref_d):
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, atol=1e-4)
    got, want = maxsim_matrix(q, d), maxsim_matrix(ref_q, ref_d)
    assert np.abs(got - want).max() <= 1e-4, (got, want)
    # the document "dog" has no punctuation; the first lost its "," and "." to the skiplist
    assert d[0].shape[0] == len(emb.tokenize([DOCS[0]])[0]) - 2

    reranker = Reranker("tiny-colbert", settings=settings)
    ranked = reranker.rank(QUERIES[0], DOCS, top_n=2)
    assert [r.index for r in ranked] == list(np.argsort(-want[0], kind="stable")[:2])
    assert ranked[0].score == pytest.approx(float(want[0].max()), abs=1e-4)
