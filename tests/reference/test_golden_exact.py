"""The engine reproduces sentence-transformers on all-MiniLM-L6-v2, text by text.

The fixture (tests/fixtures/golden_all_minilm.npz, written by scripts/make_golden.py with
sentence-transformers, fp32 CPU, max_seq_length 256) holds every unique STS-B dev sentence and 50
CISI documents longer than the 256-token window. fp16 storage costs < 3e-8 in cosine, far below
the bar, so any miss here is the engine's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedserve.eval.data import load_stsb, spearman

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "golden_all_minilm.npz"
BAR = 0.9999
WINDOW = 256


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def embedder(real_home: Path) -> Any:
    from embedserve.config import Settings
    from embedserve.embedder import Embedder

    return Embedder("all-minilm", settings=Settings(home=real_home, offline=True))


@pytest.fixture(scope="module")
def sts_vectors(embedder: Any, golden: dict[str, np.ndarray]) -> np.ndarray:
    return embedder.encode(golden["sts_texts"].tolist(), batch_size=32, normalize=True)


def _cosines(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    a = ours.astype(np.float64)
    b = theirs.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _report(cos: np.ndarray, texts: np.ndarray) -> str:
    worst = int(np.argmin(cos))
    below = int((cos < BAR).sum())
    return (
        f"min cosine {cos.min():.6f} (bar {BAR}) on text #{worst} {str(texts[worst])[:80]!r}; "
        f"{below} of {len(cos)} below the bar; mean {cos.mean():.7f}"
    )


def test_fixture_is_what_the_tests_expect(golden: dict[str, np.ndarray]) -> None:
    assert golden["sts_texts"].shape == (2910,)
    assert golden["sts_embeddings"].shape == (2910, 384)
    assert golden["long_embeddings"].shape == (50, 384)
    assert (golden["long_ntokens"] > WINDOW).all()
    assert int(golden["max_seq_length"]) == WINDOW


def test_every_stsb_dev_sentence_matches_sentence_transformers(
    sts_vectors: np.ndarray, golden: dict[str, np.ndarray]
) -> None:
    assert sts_vectors.dtype == np.float32
    assert sts_vectors.shape == (2910, 384)
    cos = _cosines(sts_vectors, golden["sts_embeddings"])
    assert cos.min() >= BAR, _report(cos, golden["sts_texts"])


def test_long_texts_truncate_like_sentence_transformers(
    embedder: Any, golden: dict[str, np.ndarray]
) -> None:
    texts = golden["long_texts"].tolist()
    ours = embedder.encode(texts, batch_size=32, normalize=True)
    assert ours.shape == (50, 384)
    cos = _cosines(ours, golden["long_embeddings"])
    assert cos.min() >= BAR, _report(cos, golden["long_texts"])


def test_token_counts_match_the_reference_tokenizer(
    embedder: Any, golden: dict[str, np.ndarray]
) -> None:
    texts = golden["sts_texts"].tolist() + golden["long_texts"].tolist()
    expected = np.minimum(np.r_[golden["sts_ntokens"], golden["long_ntokens"]], WINDOW)
    got = np.array(embedder.count_tokens(texts, truncate=True))
    bad = np.flatnonzero(got != expected)
    assert bad.size == 0, (
        f"{bad.size} token counts differ, first: {texts[bad[0]][:80]!r} "
        f"ours {got[bad[0]]} vs {expected[bad[0]]}"
    )


def test_raw_pooled_vectors_match_in_direction_and_length(
    embedder: Any, golden: dict[str, np.ndarray]
) -> None:
    ours = embedder.encode(golden["raw_texts"].tolist(), normalize=False)
    theirs = golden["raw_pooled"]
    cos = _cosines(ours, theirs)
    assert cos.min() >= BAR, _report(cos, golden["raw_texts"])
    ratio = np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert np.abs(ratio - 1).max() < 1e-3, (
        f"raw pooled norms differ by up to {np.abs(ratio - 1).max():.2e}"
    )


def test_stsb_dev_spearman_matches_the_published_reference(
    sts_vectors: np.ndarray, golden: dict[str, np.ndarray]
) -> None:
    index = {t: i for i, t in enumerate(golden["sts_texts"].tolist())}
    pairs = load_stsb("dev")
    a = sts_vectors[[index[s1] for s1, _, _ in pairs]]
    b = sts_vectors[[index[s2] for _, s2, _ in pairs]]
    rho = spearman((a * b).sum(1), [g for _, _, g in pairs])
    assert rho == pytest.approx(0.8672, abs=5e-4)
