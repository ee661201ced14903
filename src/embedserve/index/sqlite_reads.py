"""Reads for search from the SQLite store, inside one read transaction: versions, deltas, passages.

A delta since version ``v`` is three indexed range reads: documents written after ``v``
(``documents_by_version``), chunk keys tombstoned after ``v`` (``tombstones_by_version``) and
chunks with keys above the reader's last (the rowid range), their vectors read from the segment
files up to the committed lengths this same transaction sees. When ``v`` is older than the oldest
tombstone kept (``tomb_floor``), the answer is the whole collection.

The whole collection (a reader's first load) comes from the segment files, not from SQL rows:
each segment's row sidecar and vectors are read in one sequential read each, and the sidecar is
checked against the database first: the segment's chunk count (and, when it has dead rows, its
live chunk keys, from the ``chunks_by_seg`` index), and the ``(seg, off)`` of a sample of its keys.
A segment whose sidecar is missing, short or disagrees is read from SQL instead, and its sidecar
rebuilt once the read is over (``SQLiteStore.read``). Documents are not read at all: hits fetch theirs (``passages``), filters
``metadata``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedserve.errors import CollectionNotFound
from embedserve.index.segments import ROW_FIELDS, SegmentFiles
from embedserve.index.store import Delta, DocumentState, Passage

_SAMPLE = 8  # keys per segment whose (seg, off) is checked against the database


class SQLiteReadView:
    """The :class:`~embedserve.index.store.ReadView` of one SQLite read transaction."""

    def __init__(self, db: sqlite3.Connection, cid: int, directory: Path) -> None:
        self._db, self._cid, self._directory = db, cid, directory
        self.stale: list[int] = []  # segments of the last full load read from SQL (to be rebuilt)

    def version(self) -> int | None:
        row = self._db.execute("SELECT version FROM collections WHERE id = ?", (self._cid,)).fetchone()
        return None if row is None else int(row[0])

    def delta(self, since: int | None, after_key: int, dim: int) -> Delta:
        db, cid = self._db, self._cid
        row = db.execute("SELECT version, tomb_floor FROM collections WHERE id = ?", (cid,)).fetchone()
        if row is None:
            raise CollectionNotFound("the collection was deleted")
        version, floor = int(row[0]), int(row[1])
        if since is None or since < floor or since > version:
            return self._full(version, dim)
        docs = [
            DocumentState(k, i, h, json.loads(m))
            for k, i, h, m in db.execute(
                "SELECT rowid, id, content_hash, metadata FROM documents"
                " WHERE collection_id = ? AND version > ? ORDER BY rowid",
                (cid, since),
            )
        ]
        removed = np.array(
            [r[0] for r in db.execute(
                "SELECT chunk_rowid FROM tombstones WHERE collection_id = ? AND version > ?", (cid, since)
            )],
            dtype=np.int64,
        )
        # "+collection_id": walk the rowid range of the new chunks, O(new); on the index of
        # collection_id SQLite would scan every chunk of the collection (100 ms at 1M chunks)
        meta, vectors = self._chunks_from_sql("+collection_id = ? AND rowid > ?", (cid, after_key), dim)
        return _delta(version, False, meta, vectors, removed, docs)

    # -- the whole collection -------------------------------------------------------------------

    def _full(self, version: int, dim: int) -> Delta:
        db, cid = self._db, self._cid
        segs = [tuple(int(x) for x in r) for r in db.execute(
            "SELECT seg, rows, dead FROM segments WHERE collection_id = ? ORDER BY seg", (cid,)
        )]
        legacy_meta, legacy_vecs = self._chunks_from_sql("collection_id = ? AND seg IS NULL", (cid,), dim)  # rows from before segments
        total = sum(r for _, r, _ in segs) + len(legacy_meta)
        # room to grow: the reader's snapshot adopts this buffer, so the next writes need no copy
        buf = np.empty((total + total // 8 + 1024, dim), dtype=np.float32)
        meta = np.empty((total, ROW_FIELDS), dtype=np.int64)
        alive = np.ones(total, dtype=bool)
        files = SegmentFiles(self._directory, cid, dim)
        at = 0
        self.stale = []
        for seg, rows, dead in segs:
            if rows == 0:
                continue
            part = files.read_rows(seg, rows)
            ok = None if part is None else self._check(seg, rows, dead, part)
            if ok is None:
                self.stale.append(seg)
                part = self._rows_from_sql(seg, rows)
                ok = part[:, 0] > 0
            meta[at : at + rows] = part
            alive[at : at + rows] = ok
            files.read_all(seg, rows, buf[at : at + rows])
            at += rows
        meta[at:] = legacy_meta
        buf[at:total] = legacy_vecs
        keys = meta[:, 0]
        if np.all(keys > 0) and np.all(keys[1:] > keys[:-1]):
            vectors = buf[:total]
        else:  # a compaction's segment holds older keys, or placeholders of gone rows: sort
            order = np.flatnonzero(keys > 0)
            order = order[np.argsort(keys[order], kind="stable")]
            meta, alive = meta[order], alive[order]
            vectors = np.empty((len(order) + len(order) // 8 + 1024, dim), dtype=np.float32)
            np.take(buf[:total], order, axis=0, out=vectors[: len(order)])
            vectors = vectors[: len(order)]
            del buf
        return _delta(version, True, meta, vectors, meta[~alive, 0].copy(), [])

    def _check(self, seg: int, rows: int, dead: int, part: np.ndarray) -> np.ndarray | None:
        """The live mask of a segment's sidecar rows, or ``None`` when the sidecar disagrees with
        the database (it is then read from SQL)."""
        db, cid = self._db, self._cid
        keys = part[:, 0]
        count = db.execute(
            "SELECT count(*) FROM chunks WHERE collection_id = ? AND seg = ?", (cid, seg)
        ).fetchone()[0] if dead == 0 else -1
        if count == rows and np.all(keys > 0):  # nothing dead: every row is live
            live = np.ones(rows, dtype=bool)
        else:  # the live keys, from the index: every one must be in the sidecar
            held = np.fromiter(
                (r[0] for r in db.execute("SELECT rowid FROM chunks WHERE collection_id = ? AND seg = ?", (cid, seg))),
                dtype=np.int64,
            )
            live = np.isin(keys, held) & (keys > 0)
            if int(live.sum()) != len(held):
                return None
        at = np.flatnonzero(live)
        if len(at):
            sample = at[np.linspace(0, len(at) - 1, min(_SAMPLE, len(at))).astype(int)]
            marks = ",".join("?" * len(sample))
            found = {
                int(k): (s, o, d, i, a, b)
                for k, s, o, d, i, a, b in db.execute(
                    f"SELECT rowid, seg, off, doc_rowid, idx, start_char, end_char FROM chunks WHERE rowid IN ({marks})",
                    [int(keys[i]) for i in sample],
                )
            }
            for i in sample.tolist():
                k, doc, idx, start, end = (int(x) for x in part[i])
                if found.get(k) != (seg, i, doc, idx, start, end):
                    return None
        return live

    def _rows_from_sql(self, seg: int, rows: int) -> np.ndarray:
        from embedserve.index.sqlite_store import segment_rows_from_db

        return segment_rows_from_db(self._db, self._cid, seg, rows)

    # -- SQL rows -------------------------------------------------------------------------------

    def _chunks_from_sql(self, where: str, args: tuple[Any, ...], dim: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self._db.execute(
            "SELECT rowid, doc_rowid, idx, start_char, end_char, coalesce(seg, -1), coalesce(off, -1),"
            " CASE WHEN seg IS NULL THEN embedding END"
            f" FROM chunks WHERE {where} ORDER BY rowid",
            args,
        ).fetchall()
        n = len(rows)
        ints = np.array([r[:7] for r in rows], dtype=np.int64).reshape(n, 7)
        return ints[:, :ROW_FIELDS].copy(), self._vectors(ints[:, 5], ints[:, 6], rows, dim)

    def _vectors(self, segs: np.ndarray, offs: np.ndarray, rows: list[tuple], dim: int) -> np.ndarray:
        out = np.empty((len(segs), dim), dtype=np.float32)
        if not len(segs):
            return out
        committed = dict(self._db.execute("SELECT seg, rows FROM segments WHERE collection_id = ?", (self._cid,)))
        files = SegmentFiles(self._directory, self._cid, dim)
        for seg in np.unique(segs).tolist():
            at = np.flatnonzero(segs == seg)
            if seg < 0:  # written before segments existed: the vector is a blob in the row
                for i in at.tolist():
                    out[i] = np.frombuffer(rows[i][7], dtype=np.float32)
            else:
                out[at] = files.read(seg, int(committed[seg]), offs[at])
        return out

    # -- documents ------------------------------------------------------------------------------

    def passages(self, wanted: Sequence[tuple[int, int, int]]) -> list[Passage | None]:
        out: list[Passage | None] = []
        for key, start, end in wanted:
            row = self._db.execute(
                "SELECT id, substr(text, ?, ?), metadata, content_hash FROM documents WHERE rowid = ? AND collection_id = ?",
                (start + 1, end - start, key, self._cid),
            ).fetchone()
            out.append(Passage(row[0], row[1], json.loads(row[2]), row[3]) if row else None)
        return out

    def metadata(self) -> dict[int, dict[str, Any]]:
        return {
            int(k): json.loads(m)
            for k, m in self._db.execute("SELECT rowid, metadata FROM documents WHERE collection_id = ?", (self._cid,))
        }


def _delta(
    version: int, full: bool, meta: np.ndarray, vectors: np.ndarray, removed: np.ndarray, docs: list[DocumentState]
) -> Delta:
    return Delta(
        version=version, full=full, documents=docs, removed=removed, chunk_keys=meta[:, 0].copy(),
        chunk_docs=meta[:, 1].copy(), chunk_index=meta[:, 2].copy(), chunk_start=meta[:, 3].copy(),
        chunk_end=meta[:, 4].copy(), vectors=vectors,
    )
