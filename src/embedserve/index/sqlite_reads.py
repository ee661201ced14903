"""Reads for search from the SQLite store, inside one read transaction: versions, deltas, passages.

A delta since version ``v`` is three indexed range reads: documents written after ``v``
(``documents_by_version``), chunk keys tombstoned after ``v`` (``tombstones_by_version``) and
chunks with keys above the reader's last (the rowid range), their vectors read from the segment
files up to the committed lengths this same transaction sees. When ``v`` is older than the oldest
tombstone kept (``tomb_floor``), the answer is the whole collection.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embedserve.errors import CollectionNotFound
from embedserve.index.segments import SegmentFiles
from embedserve.index.store import Delta, DocumentState


class SQLiteReadView:
    """The :class:`~embedserve.index.store.ReadView` of one SQLite read transaction."""

    def __init__(self, db: sqlite3.Connection, cid: int, directory: Path) -> None:
        self._db, self._cid, self._directory = db, cid, directory

    def version(self) -> int | None:
        row = self._db.execute("SELECT version FROM collections WHERE id = ?", (self._cid,)).fetchone()
        return None if row is None else int(row[0])

    def delta(self, since: int | None, after_key: int, dim: int) -> Delta:
        db, cid = self._db, self._cid
        row = db.execute("SELECT version, tomb_floor FROM collections WHERE id = ?", (cid,)).fetchone()
        if row is None:
            raise CollectionNotFound("the collection was deleted")
        version, floor = int(row[0]), int(row[1])
        full = since is None or since < floor or since > version
        if full:
            docs_sql = "SELECT rowid, id, content_hash, metadata FROM documents WHERE collection_id = ? ORDER BY rowid"
            docs_args: tuple[int, ...] = (cid,)
            removed = np.zeros(0, np.int64)
            after_key = 0
        else:
            assert since is not None
            docs_sql = (
                "SELECT rowid, id, content_hash, metadata FROM documents"
                " WHERE collection_id = ? AND version > ? ORDER BY rowid"
            )
            docs_args = (cid, since)
            removed = np.array(
                [r[0] for r in db.execute(
                    "SELECT chunk_rowid FROM tombstones WHERE collection_id = ? AND version > ?", (cid, since)
                )],
                dtype=np.int64,
            )
        docs = [DocumentState(k, i, h, json.loads(m)) for k, i, h, m in db.execute(docs_sql, docs_args)]
        rows = db.execute(
            "SELECT rowid, doc_rowid, idx, start_char, end_char, coalesce(seg, -1), coalesce(off, -1),"
            " CASE WHEN seg IS NULL THEN embedding END"
            " FROM chunks WHERE collection_id = ? AND rowid > ? ORDER BY rowid",
            (cid, after_key),
        ).fetchall()
        n = len(rows)
        ints = np.array([r[:7] for r in rows], dtype=np.int64).reshape(n, 7)
        vectors = self._vectors(ints[:, 5], ints[:, 6], rows, dim)
        return Delta(
            version=version, full=full, documents=docs, removed=removed, chunk_keys=ints[:, 0].copy(),
            chunk_docs=ints[:, 1].copy(), chunk_index=ints[:, 2].copy(), chunk_start=ints[:, 3].copy(),
            chunk_end=ints[:, 4].copy(), vectors=vectors,
        )

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

    def passages(self, wanted: Sequence[tuple[str, int, int]]) -> list[tuple[str, str] | None]:
        out: list[tuple[str, str] | None] = []
        for doc_id, start, end in wanted:
            row = self._db.execute(
                "SELECT substr(text, ?, ?), content_hash FROM documents WHERE collection_id = ? AND id = ?",
                (start + 1, end - start, self._cid, doc_id),
            ).fetchone()
            out.append((row[0], row[1]) if row else None)
        return out
