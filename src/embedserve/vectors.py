"""Numpy-only vector maths: normalisation, Matryoshka truncation, similarity, embedding quantization."""

from __future__ import annotations

from typing import Literal

import numpy as np

from embedserve.errors import InvalidInput

Metric = Literal["cosine", "dot", "euclidean"]
Precision = Literal["float32", "int8", "uint8", "binary", "ubinary"]

_EPS = 1e-12


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation (``1 / max(norm, 1e-12)``, as Ollama and torch do), float32."""
    x = np.asarray(x, dtype=np.float32)
    # np.linalg.norm's own computation for this case, bitwise, without its checks: ~50 us less per
    # call right after an engine run (BENCHMARKS.md, the cost of a miss)
    norms = np.sqrt(np.add.reduce(x * x, axis=-1, keepdims=True))
    return x / np.maximum(norms, _EPS)


def truncate_dimensions(x: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Keep the first ``dimensions`` values and re-normalise; ``None`` or >= the size is a no-op."""
    if dimensions is None or dimensions >= x.shape[-1]:
        return x
    if dimensions <= 0:
        raise InvalidInput(f"dimensions must be positive, got {dimensions}")
    return l2_normalize(x[..., :dimensions])


def _as_matrix(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        return x[None, :]
    if x.ndim != 2:
        raise InvalidInput(f"expected a vector or a matrix, got an array of shape {x.shape}")
    return x


def similarity(a: np.ndarray, b: np.ndarray | None = None, metric: Metric = "cosine") -> np.ndarray:
    """Pairwise similarity matrix of shape (len(a), len(b)); ``b`` defaults to ``a``.

    ``cosine`` and ``dot`` are similarities; ``euclidean`` is the *negative* distance, so that for
    every metric a larger value means more similar (sentence-transformers' convention).
    """
    a2 = _as_matrix(a)
    b2 = a2 if b is None else _as_matrix(b)
    if a2.shape[1] != b2.shape[1]:
        raise InvalidInput(f"dimension mismatch: {a2.shape[1]} vs {b2.shape[1]}")
    if metric == "cosine":
        return l2_normalize(a2) @ l2_normalize(b2).T
    if metric == "dot":
        return a2 @ b2.T
    if metric == "euclidean":
        sq = (a2 * a2).sum(1)[:, None] + (b2 * b2).sum(1)[None, :] - 2.0 * (a2 @ b2.T)
        return -np.sqrt(np.maximum(sq, 0.0))
    raise InvalidInput(f"unknown metric {metric!r}; use one of: cosine, dot, euclidean")


def quantize_embeddings(
    embeddings: np.ndarray,
    precision: Precision = "int8",
    ranges: np.ndarray | None = None,
    calibration: np.ndarray | None = None,
) -> np.ndarray:
    """Quantize float embeddings with sentence-transformers' semantics.

    * ``float32``: unchanged (as float32).
    * ``int8`` / ``uint8``: per-dimension linear buckets over ``ranges`` (shape (2, d): min row,
      max row), taken from ``calibration`` embeddings when given, else from ``embeddings`` itself
      (at least two rows); values outside the ranges clip to the end buckets.
    * ``binary`` / ``ubinary``: one bit per dimension (> 0), packed 8 to a byte; ``binary`` is the
      int8 form (byte - 128), ``ubinary`` the uint8 form.
    """
    emb = np.asarray(embeddings)
    if emb.ndim != 2:
        emb = _as_matrix(emb)
    if precision == "float32":
        return emb.astype(np.float32)
    if precision in ("int8", "uint8"):
        if emb.shape[0] == 0:  # nothing to calibrate or bucket
            return np.zeros((0, emb.shape[1]), dtype=np.uint8 if precision == "uint8" else np.int8)
        if ranges is None:
            if calibration is None and emb.shape[0] < 2:
                raise InvalidInput(
                    f"cannot compute {precision} ranges from a single embedding; "
                    "pass ranges or calibration embeddings"
                )
            source = emb if calibration is None else np.asarray(calibration)
            ranges = np.vstack((np.min(source, axis=0), np.max(source, axis=0)))
        ranges = np.asarray(ranges).astype(np.float32, copy=False)
        if ranges.shape != (2, emb.shape[1]):
            raise InvalidInput(
                f"ranges must have shape (2, {emb.shape[1]}), got {tuple(ranges.shape)}"
            )
        # As sentence-transformers 6.2 (tests/fixtures/golden_quantize.npz): floor into 256
        # buckets, clip values outside the ranges, and give a constant dimension (step 0) a step
        # of 1 instead of dividing by zero.
        starts = ranges[0, :]
        steps = (ranges[1, :] - starts) / 255
        steps = np.where(steps == 0, 1, steps)
        buckets = np.clip(np.floor((emb - starts) / steps), 0, 255)
        if precision == "uint8":
            return buckets.astype(np.uint8)
        return (buckets - 128).astype(np.int8)
    if precision == "binary":  # each row packed on its own (padded to whole bytes)
        return (np.packbits(emb > 0, axis=-1) - 128).astype(np.int8)
    if precision == "ubinary":
        return np.packbits(emb > 0, axis=-1)
    raise InvalidInput(
        f"unknown precision {precision!r}; use one of: float32, int8, uint8, binary, ubinary"
    )
