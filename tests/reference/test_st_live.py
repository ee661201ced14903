"""Live comparison with sentence-transformers (the ``reference`` extra); skipped without it.

Checks that the committed quantize fixture still matches the installed sentence-transformers, and
compares ``embedserve.vectors.quantize_embeddings`` with it on fresh random inputs of awkward
shapes (dimensions not a multiple of 8, float64, values outside the calibration ranges).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedserve.vectors import quantize_embeddings

pytestmark = pytest.mark.reference

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "golden_quantize.npz"


@pytest.fixture(scope="module")
def st_quantize() -> Callable[..., Any]:
    pytest.importorskip("torch")
    pytest.importorskip("sentence_transformers")
    try:
        from sentence_transformers.util.quantization import quantize_embeddings as q
    except ImportError:  # sentence-transformers < 5
        from sentence_transformers.quantization import quantize_embeddings as q
    return q


def _same(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


def test_committed_fixture_matches_installed_sentence_transformers(
    st_quantize: Callable[..., Any],
) -> None:
    with np.load(FIXTURE) as z:
        g = {k: z[k] for k in z.files}
    for p in ("int8", "uint8"):
        _same(st_quantize(g["emb"], p), g[f"{p}__self"])
        _same(
            st_quantize(g["emb"], p, calibration_embeddings=g["calibration"]),
            g[f"{p}__calibration"],
        )
        _same(st_quantize(g["emb"], p, ranges=g["ranges"]), g[f"{p}__ranges"])
    for p in ("binary", "ubinary"):
        _same(st_quantize(g["emb"], p), g[f"{p}__self"])
        _same(st_quantize(g["emb12"], p), g[f"{p}__emb12"])


@pytest.mark.parametrize("dim", [5, 8, 13, 384])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("precision", ["float32", "int8", "uint8", "binary", "ubinary"])
def test_random_inputs_match(
    st_quantize: Callable[..., Any], dim: int, dtype: type, precision: str
) -> None:
    rng = np.random.default_rng(dim * 7 + len(precision))
    emb = rng.standard_normal((33, dim)).astype(dtype)
    calibration = (0.5 * rng.standard_normal((64, dim))).astype(dtype)
    _same(quantize_embeddings(emb, precision), st_quantize(emb, precision))
    _same(
        quantize_embeddings(emb, precision, calibration=calibration),
        st_quantize(emb, precision, calibration_embeddings=calibration),
    )
