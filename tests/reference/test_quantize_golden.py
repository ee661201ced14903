"""embedserve.vectors.quantize_embeddings against sentence-transformers' outputs (a committed
fixture written by scripts/make_golden.py), so this runs without torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedserve.errors import InvalidInput
from embedserve.vectors import quantize_embeddings

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "golden_quantize.npz"


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


def _assert_same(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.dtype == theirs.dtype
    assert ours.shape == theirs.shape
    diff = int((ours.astype(np.int64) != theirs.astype(np.int64)).sum())
    assert diff == 0, f"{diff} of {theirs.size} values differ from sentence-transformers"


def test_fixture_exercises_clipping_and_degenerate_ranges(golden: dict[str, np.ndarray]) -> None:
    # values outside the calibration ranges must hit the bounds, or the clip is not tested
    u8 = golden["uint8__calibration"]
    assert ((u8 == 0) | (u8 == 255)).sum() > 0
    assert (golden["ranges"][0] == golden["ranges"][1]).any()


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_scalar_ranges_from_the_embeddings(golden: dict[str, np.ndarray], precision: str) -> None:
    _assert_same(quantize_embeddings(golden["emb"], precision), golden[f"{precision}__self"])


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_scalar_with_calibration(golden: dict[str, np.ndarray], precision: str) -> None:
    ours = quantize_embeddings(golden["emb"], precision, calibration=golden["calibration"])
    _assert_same(ours, golden[f"{precision}__calibration"])


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_scalar_with_explicit_ranges(golden: dict[str, np.ndarray], precision: str) -> None:
    ours = quantize_embeddings(golden["emb"], precision, ranges=golden["ranges"])
    _assert_same(ours, golden[f"{precision}__ranges"])


@pytest.mark.parametrize("precision", ["binary", "ubinary"])
def test_binary(golden: dict[str, np.ndarray], precision: str) -> None:
    _assert_same(quantize_embeddings(golden["emb"], precision), golden[f"{precision}__self"])


@pytest.mark.parametrize("precision", ["binary", "ubinary"])
def test_binary_packs_each_row_when_dim_is_not_a_multiple_of_8(
    golden: dict[str, np.ndarray], precision: str
) -> None:
    ours = quantize_embeddings(golden["emb12"], precision)
    assert ours.shape == (9, 2)
    _assert_same(ours, golden[f"{precision}__emb12"])


def test_float32_is_unchanged(golden: dict[str, np.ndarray]) -> None:
    ours = quantize_embeddings(golden["emb"], "float32")
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, golden["float32__self"])


def test_a_single_embedding_without_ranges_is_refused() -> None:
    # sentence-transformers raises here: min == max on every dimension says nothing
    with pytest.raises(InvalidInput):
        quantize_embeddings(np.ones((1, 8), dtype=np.float32), "int8")
    ok = quantize_embeddings(
        np.ones((1, 8), dtype=np.float32), "uint8", calibration=np.eye(8, dtype=np.float32)
    )
    # the calibration max lands in bucket 254, not 255: float32 (1 - 0) / (1 / 255) = 254.99998,
    # floored — sentence-transformers gives the same
    assert ok.tolist() == [[254] * 8]


@pytest.mark.parametrize(
    ("precision", "dtype", "width"),
    [
        ("int8", np.int8, 12),
        ("uint8", np.uint8, 12),
        ("binary", np.int8, 2),
        ("ubinary", np.uint8, 2),
    ],
)
def test_no_rows_give_an_empty_matrix(precision: str, dtype: type, width: int) -> None:
    out = quantize_embeddings(np.zeros((0, 12), dtype=np.float32), precision)
    assert out.shape == (0, width) and out.dtype == dtype
