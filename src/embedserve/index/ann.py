"""Approximate nearest neighbours with usearch (HNSW), kept in step with the store.

usearch is an optional dependency (``pip install embedserve[ann]``). Keys are chunk row ids, which
the store never reuses (AUTOINCREMENT) and whose vectors never change, so keeping the index in step
with a new snapshot is a set difference: add the new rows, remove the gone ones. The index is
saved next to the database (``ann-<collection id>.usearch``) so that a later process starts from
it instead of rebuilding.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from embedserve.index.search import Hit, top_docs
from embedserve.index.sqlite_store import Snapshot


def _import_usearch() -> None:
    """Import usearch, onnxruntime first: usearch 2.x's extension loaded before onnxruntime makes
    the later ``import onnxruntime`` segfault (seen with usearch 2.26.6 + onnxruntime 1.32 on
    x86-64 Linux); the other order is fine."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        pass
    import usearch.index  # noqa: F401


def available() -> bool:
    try:
        _import_usearch()
    except ImportError:
        return False
    return True


class AnnIndex:
    def __init__(self, dim: int, path: Path | None = None, *, connectivity: int = 16,
                 expansion_add: int = 128, expansion_search: int = 64) -> None:
        _import_usearch()
        from usearch.index import Index

        self.dim = dim
        self.path = path
        self._make = lambda: Index(
            ndim=dim, metric="ip", dtype="f32", connectivity=connectivity,
            expansion_add=expansion_add, expansion_search=expansion_search,
        )
        self.index: Any = None
        if path is not None and path.is_file():
            try:
                idx = self._make()
                idx.load(str(path))
                self.index = idx
            except Exception:  # a stale or torn file: rebuild
                self.index = None
        if self.index is None:
            self.index = self._make()
        self._keys: set[int] = set(int(k) for k in self.index.keys) if len(self.index) else set()
        self.version: int | None = None
        self._order: np.ndarray | None = None
        self._sorted: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index)

    def sync(self, snap: Snapshot) -> tuple[int, int]:
        """Bring the index in step with ``snap``; returns (added, removed)."""
        current = snap.chunk_rowids
        cur_set = set(current.tolist())
        gone = self._keys - cur_set
        if gone:
            self.index.remove(np.fromiter(gone, dtype=np.uint64, count=len(gone)))
        new_mask = np.fromiter((k not in self._keys for k in current.tolist()), dtype=bool, count=len(current))
        added = int(new_mask.sum())
        if added:
            self.index.add(current[new_mask].astype(np.uint64), np.ascontiguousarray(snap.vectors[new_mask]),
                           threads=0)
        self._keys = cur_set
        self._order = np.argsort(current)
        self._sorted = current[self._order]
        self.version = snap.version
        if (added or gone) and self.path is not None:
            self.save()
        return added, len(gone)

    def save(self) -> None:
        assert self.path is not None
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        self.index.save(str(tmp))
        os.replace(tmp, self.path)

    def search(self, snap: Snapshot, q: np.ndarray, top_k: int, allowed: np.ndarray | None) -> list[Hit]:
        assert self._order is not None and self._sorted is not None
        n = len(snap.chunk_rowids)
        count = min(n, max(top_k * 8, 64))
        while True:
            m = self.index.search(q.astype(np.float32), count)
            keys = np.asarray(m.keys, dtype=np.int64).reshape(-1)
            ok = keys >= 0
            keys = keys[ok]
            rows = self._order[np.searchsorted(self._sorted, keys)]
            scores = snap.vectors[rows] @ q  # exact scores for the candidates (ip distance = 1 - dot)
            if allowed is not None:
                keep = allowed[rows]
                rows, scores = rows[keep], scores[keep]
            hits = top_docs(scores.astype(np.float32), rows, snap.chunk_doc, top_k)
            if len(hits) >= top_k or count >= n:
                return hits
            count = min(n, count * 4)
