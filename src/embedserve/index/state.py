"""A reader's in-memory copy of a collection, grown by :class:`~embedserve.index.store.Delta`\\ s.

Rows are appended in chunk-key order and never move until :meth:`Snapshot.compact`; a removed
chunk (deleted or replaced document) becomes a dead row (``alive[row] = False``), so applying a
delta costs O(what changed) and never copies the matrix. When dead rows pass a quarter of the rows
the arrays are compacted in one O(n) pass (amortised over those removals). Capacity grows by
doubling, so appends are amortised O(1) per row.

``epoch`` changes whenever row positions change (a full reload or a compaction); derived
structures (quantized codes, the ANN index) key their caches on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embedserve.index.store import Delta

COMPACT_FRACTION = 0.25
COMPACT_MIN = 1024


class _Column:
    """A growable numpy array (capacity doubling); ``view`` is the used part."""

    def __init__(self, dtype: Any, width: int = 0) -> None:
        self.width = width
        self.buf = np.zeros((16, width) if width else 16, dtype=dtype)
        self.n = 0

    @property
    def view(self) -> np.ndarray:
        return self.buf[: self.n]

    def extend(self, values: np.ndarray) -> None:
        need = self.n + len(values)
        if need > len(self.buf):
            cap = max(need, 2 * len(self.buf))
            shape = (cap, self.width) if self.width else cap
            grown = np.zeros(shape, dtype=self.buf.dtype)
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown
        self.buf[self.n : need] = values
        self.n = need

    def keep(self, mask: np.ndarray) -> None:
        kept = self.view[mask]
        self.buf = np.zeros((max(16, len(kept)), self.width) if self.width else max(16, len(kept)), self.buf.dtype)
        self.buf[: len(kept)] = kept
        self.n = len(kept)


class Snapshot:
    """Documents (by position), chunk arrays and the float32 unit-vector matrix of one version."""

    def __init__(self, collection_id: int, dim: int) -> None:
        self.collection_id = collection_id
        self.dim = dim
        self.version: int | None = None
        self.epoch = 0
        self._reset()

    def _reset(self) -> None:
        self.doc_ids: list[str] = []
        self.doc_hashes: list[str] = []
        self.metadata: list[dict[str, Any]] = []
        self._doc_pos: dict[int, int] = {}
        self._keys = _Column(np.int64)
        self._doc = _Column(np.int64)
        self._index = _Column(np.int32)
        self._start = _Column(np.int64)
        self._end = _Column(np.int64)
        self._alive = _Column(np.bool_)
        self._vectors = _Column(np.float32, self.dim)
        self.dead = 0
        self.epoch += 1

    # -- the arrays search reads ----------------------------------------------------------------

    @property
    def chunk_keys(self) -> np.ndarray:
        return self._keys.view

    @property
    def chunk_doc(self) -> np.ndarray:
        return self._doc.view

    @property
    def chunk_index(self) -> np.ndarray:
        return self._index.view

    @property
    def chunk_start(self) -> np.ndarray:
        return self._start.view

    @property
    def chunk_end(self) -> np.ndarray:
        return self._end.view

    @property
    def alive(self) -> np.ndarray:
        return self._alive.view

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors.view

    @property
    def rows(self) -> int:
        return self._keys.n

    @property
    def live(self) -> int:
        return self._keys.n - self.dead

    @property
    def last_key(self) -> int:
        return int(self._keys.buf[self._keys.n - 1]) if self._keys.n else 0

    def rows_of(self, keys: np.ndarray) -> np.ndarray:
        """Row positions of chunk ``keys`` (keys ascending by construction); -1 where absent."""
        keys = np.asarray(keys, dtype=np.int64)
        pos = np.searchsorted(self.chunk_keys, keys)
        pos = np.minimum(pos, max(self.rows - 1, 0))
        found = (self.rows > 0) & (self.chunk_keys[pos] == keys) if self.rows else np.zeros(len(keys), bool)
        return np.where(found, pos, -1)

    def mask(self) -> np.ndarray | None:
        """Live rows, or ``None`` when every row is live."""
        return self.alive if self.dead else None

    # -- applying changes -----------------------------------------------------------------------

    def apply(self, delta: Delta) -> np.ndarray:
        """Apply a delta; returns the chunk keys it removed (for the ANN index)."""
        if delta.full:
            self._reset()
        for d in delta.documents:
            pos = self._doc_pos.get(d.key)
            if pos is None:
                self._doc_pos[d.key] = len(self.doc_ids)
                self.doc_ids.append(d.id)
                self.doc_hashes.append(d.content_hash)
                self.metadata.append(d.metadata)
            else:
                self.doc_ids[pos], self.doc_hashes[pos], self.metadata[pos] = d.id, d.content_hash, d.metadata
        removed = np.asarray(delta.removed, dtype=np.int64)
        if len(removed) and self.rows:
            rows = self.rows_of(removed)
            rows = rows[rows >= 0]
            rows = rows[self.alive[rows]]
            self._alive.buf[rows] = False
            self.dead += len(rows)
        n = len(delta.chunk_keys)
        if n:
            if self.rows and int(delta.chunk_keys[0]) <= self.last_key:
                raise ValueError("delta chunks must come after the snapshot's last key")
            self._keys.extend(delta.chunk_keys)
            self._doc.extend(np.fromiter((self._doc_pos[int(k)] for k in delta.chunk_docs), np.int64, n))
            self._index.extend(delta.chunk_index)
            self._start.extend(delta.chunk_start)
            self._end.extend(delta.chunk_end)
            self._alive.extend(np.ones(n, dtype=bool))
            self._vectors.extend(_unit(delta.vectors))
        self.version = delta.version
        if self.dead >= max(COMPACT_MIN, COMPACT_FRACTION * self.rows):
            self.compact()
        return removed

    def compact(self) -> None:
        """Drop dead rows and documents without live chunks (row positions change: new epoch)."""
        keep = self.alive.copy()
        for col in (self._keys, self._doc, self._index, self._start, self._end, self._alive, self._vectors):
            col.keep(keep)
        live_docs = np.unique(self.chunk_doc)
        remap = np.full(len(self.doc_ids), -1, dtype=np.int64)
        remap[live_docs] = np.arange(len(live_docs))
        self._doc.buf[: self._doc.n] = remap[self.chunk_doc]
        self.doc_ids = [self.doc_ids[i] for i in live_docs]
        self.doc_hashes = [self.doc_hashes[i] for i in live_docs]
        self.metadata = [self.metadata[i] for i in live_docs]
        self._doc_pos = {k: int(remap[p]) for k, p in self._doc_pos.items() if remap[p] >= 0}
        self.dead = 0
        self.epoch += 1


def _unit(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (vectors a user brought may not be)."""
    v = np.asarray(v, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    if np.all(np.abs(norms - 1) < 1e-6):  # already unit (every vector a model made): no copy
        return v
    return v / np.where(norms > 0, norms, 1).astype(np.float32)
