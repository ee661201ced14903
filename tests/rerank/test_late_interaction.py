"""MaxSim and the batched scorers against a plain double loop; token codecs round-trip."""

from __future__ import annotations

import numpy as np
import pytest

import embedserve
from embedserve.late_interaction import (
    dequantize_tokens,
    maxsim,
    maxsim_batch,
    maxsim_matrix,
    quantize_tokens,
)


def _naive(q: np.ndarray, d: np.ndarray) -> float:
    if not len(q) or not len(d):
        return 0.0
    return sum(max(float(qi @ dj) for dj in d) for qi in q)


def _unit(rng: np.random.Generator, n: int, dim: int = 8) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_maxsim_is_sum_of_best_matches() -> None:
    rng = np.random.default_rng(0)
    q, d = _unit(rng, 5), _unit(rng, 9)
    assert embedserve.maxsim(q, d) == pytest.approx(_naive(q, d), abs=1e-5)
    # identical token sets: every query token finds itself
    assert maxsim(q, q) == pytest.approx(5.0, abs=1e-5)


def test_matrix_matches_naive_with_empty_and_uneven_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    import embedserve.late_interaction as li

    rng = np.random.default_rng(1)
    queries = [_unit(rng, n) for n in (3, 0, 7)]
    docs = [_unit(rng, n) for n in (1, 12, 0, 5, 30, 2)]
    want = np.array([[_naive(q, d) for d in docs] for q in queries])
    np.testing.assert_allclose(maxsim_matrix(queries, docs), want, atol=1e-5)
    monkeypatch.setattr(li, "_MAX_CELLS", 40)  # force many slices of documents
    np.testing.assert_allclose(maxsim_matrix(queries, docs), want, atol=1e-5)
    np.testing.assert_allclose(maxsim_batch(queries[2], docs), want[2], atol=1e-5)
    assert maxsim_matrix([], docs).shape == (0, 6)


def test_dimension_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="dimension"):
        maxsim(np.ones((2, 4)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="dimensions"):
        maxsim_matrix([np.ones((2, 4))], [np.ones((3, 5))])
    with pytest.raises(ValueError, match="tokens, dim"):
        maxsim(np.ones(4), np.ones((3, 4)))


def test_int8_and_binary_codecs() -> None:
    rng = np.random.default_rng(2)
    t = _unit(rng, 50, 64)
    codes, scales = quantize_tokens(t, "int8")
    assert codes.dtype == np.int8 and codes.nbytes == t.nbytes // 4
    back = dequantize_tokens(codes, scales, "int8", 64)
    assert np.abs(back - t).max() < 0.01
    bits, none = quantize_tokens(t, "binary")
    assert none is None and bits.nbytes == t.nbytes // 32
    signs = dequantize_tokens(bits, None, "binary", 64)
    assert np.array_equal(signs > 0, t > 0)
    q = _unit(rng, 4, 64)
    # int8 re-scoring keeps MaxSim within a hair of float
    assert maxsim(q, back) == pytest.approx(maxsim(q, t), abs=0.02)
    with pytest.raises(ValueError, match="unknown token codec"):
        quantize_tokens(t, "int4")
