"""Late interaction (ColBERT's MaxSim) over token vectors: numpy only, no loop over tokens.

``maxsim(q, d)`` is the sum, over the query's token vectors, of each one's best dot product with
any of the document's token vectors. With unit-length token vectors (what ``encode(...,
output="token")`` returns by default) every term is a cosine, so a score lies in
``[-len(q), len(q)]``.

The batched scorers put every document's tokens in one matrix, take one matrix product, and reduce
per document with ``np.maximum.reduceat`` over the documents' offsets (and per query with
``np.add.reduceat``), so the only Python loop is over memory-bounded slices of documents.

Compressed token vectors (for collections): ``quantize_tokens`` keeps int8 codes and one float
scale per token (``v ~= codes * scale``, 4x smaller than float32) or sign bits (32x smaller, scored
by Hamming similarity, meant for a first pass that float or int8 vectors re-score).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# cells of the (query tokens x document tokens) similarity matrix computed at once (~64 MB)
_MAX_CELLS = 1 << 24


def _as_tokens(x: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"{what} must be a (tokens, dim) array, got shape {a.shape}")
    return a


def maxsim(query: np.ndarray, doc: np.ndarray) -> float:
    """Sum over query tokens of the best dot product with any document token (0.0 if either is empty)."""
    q = _as_tokens(query, "query")
    d = _as_tokens(doc, "doc")
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"query has dimension {q.shape[1]}, doc has {d.shape[1]}")
    if not len(q) or not len(d):
        return 0.0
    return float((q @ d.T).max(axis=1).sum())


def _offsets(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


def maxsim_matrix(queries: Sequence[np.ndarray], docs: Sequence[np.ndarray]) -> np.ndarray:
    """MaxSim of every query against every document: float32 ``(len(queries), len(docs))``.

    One matrix product per memory-bounded slice of documents; an empty query or document scores 0.
    """
    qs = [_as_tokens(q, "query") for q in queries]
    ds = [_as_tokens(d, "doc") for d in docs]
    out = np.zeros((len(qs), len(ds)), dtype=np.float32)
    if not qs or not ds:
        return out
    dims = {a.shape[1] for a in qs + ds if a.shape[0]} or {qs[0].shape[1]}
    if len(dims) != 1:
        raise ValueError(f"token vectors of different dimensions: {sorted(dims)}")
    q_len = np.array([len(q) for q in qs])
    q_live = np.flatnonzero(q_len)
    if not len(q_live):
        return out
    q_all = np.concatenate([qs[i] for i in q_live])
    q_off = _offsets(q_len[q_live])
    d_len = np.array([len(d) for d in ds])
    budget = max(1, _MAX_CELLS // max(1, len(q_all)))
    start = 0
    while start < len(ds):
        stop, cells = start, 0
        while stop < len(ds) and (stop == start or cells + d_len[stop] <= budget):
            cells += d_len[stop]
            stop += 1
        live = start + np.flatnonzero(d_len[start:stop])
        if len(live):
            d_all = np.concatenate([ds[i] for i in live])
            sims = q_all @ d_all.T  # (query tokens, doc tokens)
            best = np.maximum.reduceat(sims, _offsets(d_len[live]), axis=1)  # (q tokens, docs)
            out[np.ix_(q_live, live)] = np.add.reduceat(best, q_off, axis=0)
        start = stop
    return out


def maxsim_batch(query: np.ndarray, docs: Sequence[np.ndarray]) -> np.ndarray:
    """MaxSim of one query against each document: float32 ``(len(docs),)``."""
    return maxsim_matrix([query], docs)[0]


# -- compressed token vectors ---------------------------------------------------------------

TOKEN_CODECS = ("float32", "int8", "binary")


def quantize_tokens(tokens: np.ndarray, codec: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Compress ``(n, d)`` token vectors: ``(codes, scales)``.

    ``int8``: symmetric per token, ``codes * scales[:, None] ~= tokens``; ``binary``: the sign
    bits packed (``np.packbits``), no scales; ``float32``: unchanged.
    """
    t = _as_tokens(tokens, "tokens")
    if codec == "float32":
        return t, None
    if codec == "int8":
        peak = np.abs(t).max(axis=1) if len(t) else np.zeros(0, np.float32)
        scales = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        codes = np.clip(np.rint(t / scales[:, None]), -127, 127).astype(np.int8)
        return codes, scales
    if codec == "binary":
        return np.packbits(t > 0, axis=1), None
    raise ValueError(f"unknown token codec {codec!r}; choose one of: {', '.join(TOKEN_CODECS)}")


def dequantize_tokens(codes: np.ndarray, scales: np.ndarray | None, codec: str, dim: int) -> np.ndarray:
    """Float32 ``(n, dim)`` vectors back from :func:`quantize_tokens` (binary: +-1/sqrt(dim))."""
    if codec == "float32":
        return np.asarray(codes, dtype=np.float32)
    if codec == "int8":
        assert scales is not None
        return codes.astype(np.float32) * scales[:, None]
    if codec == "binary":
        bits = np.unpackbits(codes, axis=1, count=dim).astype(np.float32)
        return (bits * 2.0 - 1.0) / np.float32(np.sqrt(dim))
    raise ValueError(f"unknown token codec {codec!r}")
