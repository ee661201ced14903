"""Search over a :class:`~embedserve.index.state.Snapshot`: exact, quantized, approximate.

All strategies score chunks; a document's score is its best chunk's, and each result names that
chunk. ``exact`` is a float32 matrix product (cosine, since vectors are unit length). ``binary``
scans 1-bit codes by Hamming distance (numpy ``bitwise_count`` on 64-bit words), ``int8`` scans
8-bit codes (sentence-transformers' ``quantize_embeddings`` with ranges calibrated on the
collection); both then rescore their best candidates with the float32 vectors, so scores are
exact and only the candidate set is approximate. ``ann`` asks an HNSW index (see ``ann.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from embedserve.index.state import Snapshot, _Column
from embedserve.vectors import quantize_embeddings

Strategy = Literal["auto", "exact", "binary", "int8", "ann"]
STRATEGIES = ("auto", "exact", "binary", "int8", "ann")


@dataclass(frozen=True)
class SearchConfig:
    """When ``strategy`` is ``auto``: exact below ``quantize_from`` chunks, a binary scan with
    float32 rescoring from there, and the ANN index from ``ann_from`` (when usearch is installed)."""

    strategy: Strategy = "auto"
    quantize_from: int = 200_000
    ann_from: int = 1_000_000
    # candidates rescored = max(rescore_min, multiplier * top_k, rescore_fraction * chunks): the
    # number of near neighbours a 1-bit code cannot tell apart grows with the collection, so a
    # fixed window loses recall (binary recall@10 0.78 at 1M with 200; 1.0 with 1,000; BENCHMARKS.md)
    rescore_multiplier: int = 10
    rescore_min: int = 200
    rescore_fraction: float = 0.001
    exact_below: int = 20_000  # with a filter, search the allowed chunks exactly if fewer than this


@dataclass
class Hit:
    doc: int  # the document's key (snapshot.chunk_doc)
    chunk: int  # row of the snapshot's chunk arrays
    score: float


def _pack_binary(x: np.ndarray) -> np.ndarray:
    packed = np.ascontiguousarray(quantize_embeddings(x, "ubinary"))
    if packed.shape[1] % 8 == 0:
        return packed.view(np.uint64)
    return packed


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    table = np.array([i.bit_count() for i in range(256)], dtype=np.uint8)  # numpy < 2
    return table[x.view(np.uint8)]


class QuantizedCodes:
    """1-bit and 8-bit codes of a snapshot's rows, extended as rows are appended and rebuilt when
    row positions change (a new ``epoch``). int8 ranges are calibrated on the rows present at the
    first int8 query of an epoch; later rows clip to them (a compaction recalibrates)."""

    def __init__(self) -> None:
        self.epoch = -1
        self._binary: _Column | None = None
        self._int8: _Column | None = None
        self.ranges: np.ndarray | None = None

    def _sync(self, snap: Snapshot) -> None:
        if self.epoch != snap.epoch:
            self.epoch, self._binary, self._int8, self.ranges = snap.epoch, None, None, None

    def binary(self, snap: Snapshot) -> np.ndarray:
        self._sync(snap)
        v = snap.vectors
        if self._binary is None:
            packed = _pack_binary(v[:1] if len(v) else np.zeros((1, v.shape[1]), np.float32))
            self._binary = _Column(packed.dtype, packed.shape[1])
        if self._binary.n < len(v):
            self._binary.extend(_pack_binary(v[self._binary.n :]))
        return self._binary.view

    def int8(self, snap: Snapshot) -> tuple[np.ndarray, np.ndarray]:
        self._sync(snap)
        v = snap.vectors
        if self._int8 is None or self.ranges is None:
            ranges = np.vstack((v.min(axis=0), v.max(axis=0))) if len(v) else np.zeros((2, v.shape[1]))
            ranges[1] = np.maximum(ranges[1], ranges[0] + 1e-6)
            self.ranges = ranges
            self._int8 = _Column(np.int8, v.shape[1])
        if self._int8.n < len(v):
            self._int8.extend(quantize_embeddings(v[self._int8.n :], "int8", ranges=self.ranges))
        return self._int8.view, self.ranges


def binary_codes(snap: Snapshot, codes: QuantizedCodes) -> np.ndarray:
    return codes.binary(snap)


def int8_codes(snap: Snapshot, codes: QuantizedCodes) -> tuple[np.ndarray, np.ndarray]:
    return codes.int8(snap)


def top_docs(
    scores: np.ndarray, rows: np.ndarray | None, chunk_doc: np.ndarray, top_k: int
) -> list[Hit]:
    """Best ``top_k`` documents from chunk ``scores`` (at ``rows`` of the snapshot, or all rows).
    ``-inf`` scores are excluded."""
    n = len(scores)
    if n == 0 or top_k <= 0:
        return []
    m = min(n, top_k * 4 + 16)
    while True:
        part = np.argpartition(-scores, m - 1)[:m] if m < n else np.arange(n)
        part = part[np.argsort(-scores[part], kind="stable")]
        hits: list[Hit] = []
        seen: set[int] = set()
        for i in part:
            s = float(scores[i])
            if s == -np.inf:
                break
            row = int(rows[i]) if rows is not None else int(i)
            doc = int(chunk_doc[row])
            if doc in seen:
                continue
            seen.add(doc)
            hits.append(Hit(doc, row, s))
            if len(hits) == top_k:
                return hits
        if m >= n or (len(part) and scores[part[-1]] == -np.inf):
            return hits
        m = min(n, m * 4)


def exact(snap: Snapshot, q: np.ndarray, top_k: int, allowed: np.ndarray | None) -> list[Hit]:
    if allowed is not None:
        rows = np.flatnonzero(allowed)
        scores = snap.vectors[rows] @ q
        return top_docs(scores, rows, snap.chunk_doc, top_k)
    return top_docs(snap.vectors @ q, None, snap.chunk_doc, top_k)


def _rescore(snap: Snapshot, q: np.ndarray, cand: np.ndarray, top_k: int) -> list[Hit]:
    scores = snap.vectors[cand] @ q
    return top_docs(scores, cand, snap.chunk_doc, top_k)


def rescore_window(cfg: SearchConfig, top_k: int, n: int) -> int:
    """How many candidates a quantized scan rescores with float32 vectors among ``n`` rows."""
    return max(cfg.rescore_min, cfg.rescore_multiplier * top_k, math.ceil(cfg.rescore_fraction * n))


def _candidates(approx: np.ndarray, allowed: np.ndarray | None, m: int) -> np.ndarray:
    """Rows with the ``m`` best approximate scores (higher is better)."""
    if allowed is not None:
        approx = np.where(allowed, approx, -np.inf)
    n = len(approx)
    if m >= n:
        cand = np.arange(n)
    else:
        cand = np.argpartition(-approx, m - 1)[:m]
    if allowed is not None:
        cand = cand[allowed[cand]]
    return cand


def binary_scan(
    snap: Snapshot, q: np.ndarray, top_k: int, allowed: np.ndarray | None, codes: QuantizedCodes, cfg: SearchConfig
) -> list[Hit]:
    packed = binary_codes(snap, codes)
    qp = _pack_binary(q[None, :])[0]
    dist = _popcount(packed ^ qp).sum(axis=1, dtype=np.int32)
    m = rescore_window(cfg, top_k, snap.live if allowed is None else int(allowed.sum()))
    return _rescore(snap, q, _candidates(-dist.astype(np.float32), allowed, m), top_k)


def int8_scan(
    snap: Snapshot, q: np.ndarray, top_k: int, allowed: np.ndarray | None, codes: QuantizedCodes, cfg: SearchConfig
) -> list[Hit]:
    i8, ranges = int8_codes(snap, codes)
    qi = quantize_embeddings(q[None, :], "int8", ranges=ranges)[0].astype(np.float32)
    n = len(i8)
    approx = np.empty(n, dtype=np.float32)
    block = 16384  # numpy has no int8 GEMM: widen block by block to bound memory
    for i in range(0, n, block):
        approx[i : i + block] = i8[i : i + block].astype(np.float32) @ qi
    m = rescore_window(cfg, top_k, snap.live if allowed is None else int(allowed.sum()))
    return _rescore(snap, q, _candidates(approx, allowed, m), top_k)
