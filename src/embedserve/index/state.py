"""A reader's in-memory copy of a collection, grown by :class:`~embedserve.index.store.Delta`\\ s.

Rows are appended in chunk-key order and never move until :meth:`Snapshot.compact`; a removed
chunk (deleted or replaced document) becomes a dead row (``alive[row] = False``), so applying a
delta costs O(what changed) and never copies the matrix. When dead rows pass a quarter of the rows
the arrays are compacted in one O(n) pass (amortised over those removals). Capacity grows by
doubling, so appends are amortised O(1) per row; a full load's vector buffer is adopted as is.

The snapshot holds chunks only: ``chunk_doc`` is each chunk's *document key* (the store's), and a
document's id, text and metadata are read for a query's hits (``ReadView.passages``). Metadata of
every document (``meta``) is loaded on the first filtered query and kept up to date by deltas.

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
        base = values.base
        if (  # the first rows, a view at the start of a larger fresh buffer: adopt it, no copy
            self.n == 0 and isinstance(base, np.ndarray) and base.dtype == self.buf.dtype
            and base.ndim == values.ndim and base.shape[1:] == values.shape[1:] and base.flags.c_contiguous
            and values.flags.c_contiguous and values.ctypes.data == base.ctypes.data and base.base is None
        ):
            self.buf, self.n = base, len(values)
            return
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
    """Chunk arrays (keys, document keys, spans) and the float32 unit-vector matrix of one version."""

    def __init__(self, collection_id: int, dim: int) -> None:
        self.collection_id = collection_id
        self.dim = dim
        self.version: int | None = None
        self.epoch = 0
        self._reset()

    def _reset(self) -> None:
        self.meta: dict[int, dict[str, Any]] | None = None  # document key -> metadata, once loaded
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
        if self.meta is not None:
            for d in delta.documents:
                self.meta[d.key] = d.metadata
        n = len(delta.chunk_keys)
        if n:
            if self.rows and int(delta.chunk_keys[0]) <= self.last_key:
                raise ValueError("delta chunks must come after the snapshot's last key")
            self._keys.extend(delta.chunk_keys)
            self._doc.extend(delta.chunk_docs)
            self._index.extend(delta.chunk_index)
            self._start.extend(delta.chunk_start)
            self._end.extend(delta.chunk_end)
            self._alive.extend(np.ones(n, dtype=bool))
            self._vectors.extend(_unit(delta.vectors))
        removed = np.asarray(delta.removed, dtype=np.int64)
        if len(removed) and self.rows:
            rows = self.rows_of(removed)
            rows = rows[rows >= 0]
            rows = rows[self.alive[rows]]
            self._alive.buf[rows] = False
            self.dead += len(rows)
        self.version = delta.version
        if self.dead >= max(COMPACT_MIN, COMPACT_FRACTION * self.rows):
            self.compact()
        return removed

    def allowed_by(self, pred: Any) -> np.ndarray:
        """Rows whose document's metadata satisfies ``pred`` (``meta`` must be loaded)."""
        assert self.meta is not None
        if not self.rows:
            return np.zeros(0, dtype=bool)
        keys = np.fromiter(self.meta.keys(), dtype=np.int64, count=len(self.meta))
        ok = np.fromiter((pred(m) for m in self.meta.values()), dtype=bool, count=len(self.meta))
        order = np.argsort(keys)
        keys, ok = keys[order], ok[order]
        pos = np.minimum(np.searchsorted(keys, self.chunk_doc), max(len(keys) - 1, 0))
        return (keys[pos] == self.chunk_doc) & ok[pos] if len(keys) else np.zeros(self.rows, dtype=bool)

    def compact(self) -> None:
        """Drop dead rows (row positions change: new epoch) and the metadata of documents gone."""
        keep = self.alive.copy()
        for col in (self._keys, self._doc, self._index, self._start, self._end, self._alive, self._vectors):
            col.keep(keep)
        if self.meta is not None:
            docs = set(np.unique(self.chunk_doc).tolist())
            self.meta = {k: m for k, m in self.meta.items() if k in docs}
        self.dead = 0
        self.epoch += 1


def _unit(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (vectors a user brought may not be)."""
    v = np.asarray(v, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", v, v))[:, None]  # no (n, dim) temporary
    if np.all(np.abs(norms - 1) < 1e-6):  # already unit (every vector a model made): no copy
        return v
    return v / np.where(norms > 0, norms, 1).astype(np.float32)
