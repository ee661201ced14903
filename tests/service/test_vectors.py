"""``l2_normalize``: what numpy's own ``linalg.norm`` route gives, bitwise, for every shape used."""

from __future__ import annotations

import numpy as np
import pytest

from embedserve.vectors import l2_normalize, truncate_dimensions


@pytest.mark.parametrize("shape", [(384,), (1, 384), (7, 768), (3, 5, 32), (0, 384)])
def test_l2_normalize_is_bitwise_what_linalg_norm_gives(shape: tuple[int, ...]) -> None:
    x = (np.random.default_rng(3).standard_normal(shape) * 7).astype(np.float32)
    expected = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    got = l2_normalize(x)
    assert got.dtype == np.float32 and got.shape == x.shape
    assert got.tobytes() == expected.astype(np.float32).tobytes()


def test_l2_normalize_keeps_zero_rows_zero_and_takes_other_dtypes() -> None:
    x = np.zeros((2, 8), np.float64)
    x[1, 0] = 3.0
    got = l2_normalize(x)
    assert got.dtype == np.float32
    assert not got[0].any() and got[1, 0] == 1.0
    assert truncate_dimensions(got, 4).shape == (2, 4)
