"""The embedded store: one SQLite database (WAL mode) under ``Settings.collections_dir``, plus
append-only vector segment files beside it (``segments.py``).

Tables: ``collections`` (name, pinned model and digest, chunk settings, a ``version`` bumped by
every write), ``documents`` (id, content hash, text, metadata JSON, the version that last wrote
it), ``chunks`` (character span and where the vector lives: ``(seg, off)`` in a segment file, or a
blob in ``embedding`` for rows written before segments existed), ``segments`` (committed and dead
rows per file) and ``tombstones`` (chunk keys removed by each version). The schema is versioned by
a ``_migrations`` table, as in simonw/llm: each migration runs once, in order, inside a write
transaction.

A write costs O(its documents): rows inserted, vectors appended to one segment, tombstones for the
chunks it replaces. Readers ask for the changes since their version (``sqlite_reads.py``).
Segments whose rows are mostly dead are rewritten by a background compaction (``compaction.py``).

Concurrency: WAL lets readers go on while one writer commits; ``busy_timeout`` makes a second
writer (the server and a CLI ``index add`` at once) wait instead of failing; writers keep their
transactions short (embedding happens before the transaction starts). A read transaction sees one
snapshot, so a query never mixes two states of a collection.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from embedserve.errors import CollectionNotFound, StoreError
from embedserve.index.filters import compile_where
from embedserve.index.segments import ROW_FIELDS, SEGMENT_ROWS, SegmentFiles
from embedserve.index.sqlite_reads import SQLiteReadView
from embedserve.index.store import CollectionRow, DocumentWrite, StoreHit, batched

log = logging.getLogger("embedserve.index")

DB_NAME = "collections.db"
BUSY_TIMEOUT_S = 30.0


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Run ``;``-separated DDL inside the current transaction (``executescript`` would commit)."""
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


def _m001_initial(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE collections (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            model TEXT NOT NULL,
            digest TEXT NOT NULL,
            dim INTEGER NOT NULL,
            max_tokens INTEGER NOT NULL,
            chunk_tokens INTEGER NOT NULL,
            overlap INTEGER NOT NULL,
            version INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE documents (
            rowid INTEGER PRIMARY KEY AUTOINCREMENT,
            collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
            id TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            text TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            updated_at REAL NOT NULL,
            UNIQUE (collection_id, id)
        );
        CREATE TABLE chunks (
            rowid INTEGER PRIMARY KEY AUTOINCREMENT,
            collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
            doc_rowid INTEGER NOT NULL REFERENCES documents(rowid) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            start_char INTEGER NOT NULL,
            end_char INTEGER NOT NULL,
            embedding BLOB NOT NULL
        );
        CREATE INDEX chunks_by_collection ON chunks (collection_id, doc_rowid, idx);
        CREATE INDEX chunks_by_doc ON chunks (doc_rowid);
        """
    )


def _m002_segments(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        ALTER TABLE collections ADD COLUMN tomb_floor INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE collections ADD COLUMN next_seg INTEGER NOT NULL DEFAULT 1;
        UPDATE collections SET tomb_floor = version;
        ALTER TABLE documents ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX documents_by_version ON documents (collection_id, version);
        ALTER TABLE chunks ADD COLUMN seg INTEGER;
        ALTER TABLE chunks ADD COLUMN off INTEGER;
        CREATE INDEX chunks_by_seg ON chunks (collection_id, seg);
        CREATE TABLE segments (
            collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
            seg INTEGER NOT NULL,
            rows INTEGER NOT NULL,
            dead INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (collection_id, seg)
        );
        CREATE TABLE tombstones (
            collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            chunk_rowid INTEGER NOT NULL
        );
        CREATE INDEX tombstones_by_version ON tombstones (collection_id, version)
        """
    )


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("m001_initial", _m001_initial),
    ("m002_segments", _m002_segments),
]
SCHEMA_VERSION = len(MIGRATIONS)


class SQLiteStore:
    """The :class:`~embedserve.index.store.CollectionStore` over one SQLite database: a connection
    safe to share between threads (one lock)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"could not put {self.path} in WAL mode (got {mode})")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the collections database {self.path}: {exc}") from None
        self._lock = threading.RLock()
        self.compact_after_writes = True  # a write that leaves enough dead rows starts a compaction
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- transactions ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.OperationalError as exc:
                raise StoreError(f"collections database busy or unavailable: {exc}") from None
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self.transaction(write=True) as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            done = {r[0] for r in db.execute("SELECT name FROM _migrations")}
            unknown = done - {name for name, _ in MIGRATIONS}
            if unknown:
                raise StoreError(
                    f"{self.path} was written by a newer embedserve (migrations {sorted(unknown)})"
                )
            for name, fn in MIGRATIONS:
                if name not in done:
                    fn(db)
                    db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- collections ----------------------------------------------------------------------------

    _COLS = "id, name, model, digest, dim, max_tokens, chunk_tokens, overlap, version, created_at, updated_at"

    def get_collection(self, name: str, db: sqlite3.Connection | None = None) -> CollectionRow | None:
        if db is None:
            with self.transaction() as db2:
                return self.get_collection(name, db2)
        row = db.execute(f"SELECT {self._COLS} FROM collections WHERE name = ?", (name,)).fetchone()
        return CollectionRow(*row) if row else None

    def create_collection(
        self, name: str, *, model: str, digest: str, dim: int, max_tokens: int, chunk_tokens: int, overlap: int
    ) -> CollectionRow:
        now = time.time()
        with self.transaction(write=True) as db:
            existing = self.get_collection(name, db)
            if existing is not None:  # created by someone else meanwhile
                return existing
            db.execute(
                "INSERT INTO collections (name, model, digest, dim, max_tokens, chunk_tokens, overlap,"
                " version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                (name, model, digest, dim, max_tokens, chunk_tokens, overlap, now, now),
            )
            row = self.get_collection(name, db)
        assert row is not None
        return row

    def list_collections(self) -> list[tuple[CollectionRow, int, int]]:
        """Each collection with its document and chunk counts."""
        with self.transaction() as db:
            rows = [CollectionRow(*r) for r in db.execute(f"SELECT {self._COLS} FROM collections ORDER BY name")]
            return [(r, *self._counts(db, r.id)) for r in rows]

    def drop_collection(self, name: str) -> bool:
        with self.transaction(write=True) as db:
            row = self.get_collection(name, db)
            if row is None:
                return False
            db.execute("DELETE FROM collections WHERE id = ?", (row.id,))
        SegmentFiles(self.directory, row.id, row.dim).remove_all()
        return True

    def _counts(self, db: sqlite3.Connection, cid: int) -> tuple[int, int]:
        docs = db.execute("SELECT count(*) FROM documents WHERE collection_id = ?", (cid,)).fetchone()[0]
        chunks = db.execute("SELECT count(*) FROM chunks WHERE collection_id = ?", (cid,)).fetchone()[0]
        return int(docs), int(chunks)

    def counts(self, cid: int) -> tuple[int, int]:
        with self.transaction() as db:
            return self._counts(db, cid)

    def version(self, cid: int, db: sqlite3.Connection | None = None) -> int | None:
        if db is None:
            with self.transaction() as db2:
                return self.version(cid, db2)
        row = db.execute("SELECT version FROM collections WHERE id = ?", (cid,)).fetchone()
        return None if row is None else int(row[0])

    # -- documents ------------------------------------------------------------------------------

    def hashes(self, cid: int, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """``id -> (content_hash, metadata JSON)`` of the given ids that exist."""
        out: dict[str, tuple[str, str]] = {}
        with self.transaction() as db:
            for part in batched(ids):
                q = f"SELECT id, content_hash, metadata FROM documents WHERE collection_id = ? AND id IN ({','.join('?' * len(part))})"
                for doc_id, h, meta in db.execute(q, (cid, *part)):
                    out[doc_id] = (h, meta)
        return out

    def write(
        self,
        cid: int,
        upserts: Sequence[DocumentWrite] = (),
        metadata_only: Sequence[tuple[str, str]] = (),
        deletes: Sequence[str] = (),
    ) -> None:
        now = time.time()
        with self.transaction(write=True) as db:
            row = db.execute("SELECT version, dim FROM collections WHERE id = ?", (cid,)).fetchone()
            if row is None:
                raise CollectionNotFound("the collection was deleted while documents were being added")
            v, dim = int(row[0]) + 1, int(row[1])
            for doc_id in deletes:
                found = db.execute(
                    "SELECT rowid FROM documents WHERE collection_id = ? AND id = ?", (cid, doc_id)
                ).fetchone()
                if found is not None:
                    _bury(db, cid, found[0], v)
                    db.execute("DELETE FROM documents WHERE rowid = ?", (found[0],))
            for doc_id, meta in metadata_only:
                db.execute(
                    "UPDATE documents SET metadata = ?, updated_at = ?, version = ? WHERE collection_id = ? AND id = ?",
                    (meta, now, v, cid, doc_id),
                )
            placed: list[tuple[int, DocumentWrite]] = []
            for d in upserts:
                found = db.execute(
                    "SELECT rowid FROM documents WHERE collection_id = ? AND id = ?", (cid, d.id)
                ).fetchone()
                if found is None:
                    cur = db.execute(
                        "INSERT INTO documents (collection_id, id, content_hash, text, metadata, updated_at, version)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (cid, d.id, d.content_hash, d.text, d.metadata, now, v),
                    )
                    doc_rowid = int(cur.lastrowid or 0)
                else:
                    doc_rowid = int(found[0])
                    _bury(db, cid, doc_rowid, v)
                    db.execute("DELETE FROM chunks WHERE doc_rowid = ?", (doc_rowid,))
                    db.execute(
                        "UPDATE documents SET content_hash = ?, text = ?, metadata = ?, updated_at = ?, version = ?"
                        " WHERE rowid = ?",
                        (d.content_hash, d.text, d.metadata, now, v, doc_rowid),
                    )
                placed.append((doc_rowid, d))
            chunks = [(doc_rowid, c) for doc_rowid, d in placed for c in d.chunks]
            if chunks:
                # chunk keys are given explicitly (after every key ever used: AUTOINCREMENT's
                # sequence), so that the segment's row sidecar can name them before the insert
                first = 1 + int(db.execute(
                    "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'chunks'), 0),"
                    " coalesce((SELECT max(rowid) FROM chunks), 0))"
                ).fetchone()[0])
                keys = np.arange(first, first + len(chunks), dtype=np.int64)
                meta = np.array([(0, r, c.index, c.start, c.end) for r, c in chunks], dtype=np.int64)
                meta[:, 0] = keys
                seg, off = self._append(db, cid, dim, np.vstack([c.vector for _, c in chunks]), meta)
                db.executemany(
                    "INSERT INTO chunks (rowid, collection_id, doc_rowid, idx, start_char, end_char, embedding, seg, off)"
                    " VALUES (?, ?, ?, ?, ?, ?, x'', ?, ?)",
                    [(int(keys[k]), cid, r, c.index, c.start, c.end, seg, off + k) for k, (r, c) in enumerate(chunks)],
                )
            db.execute("UPDATE collections SET version = ?, updated_at = ? WHERE id = ?", (v, now, cid))
        if self.compact_after_writes:
            from embedserve.index.compaction import maybe_compact_in_background

            maybe_compact_in_background(self, cid)

    def _append(
        self, db: sqlite3.Connection, cid: int, dim: int, vectors: np.ndarray, rows: np.ndarray
    ) -> tuple[int, int]:
        """Append a write's vectors and their row sidecar entries to the collection's open segment
        (a new one when it is full); returns ``(seg, first row)``. Inside the write transaction,
        before the rows pointing there."""
        last = db.execute(
            "SELECT seg, rows FROM segments WHERE collection_id = ? ORDER BY seg DESC LIMIT 1", (cid,)
        ).fetchone()
        if last is None or (last[1] and last[1] + len(vectors) > SEGMENT_ROWS):
            seg = int(db.execute("SELECT next_seg FROM collections WHERE id = ?", (cid,)).fetchone()[0])
            db.execute("UPDATE collections SET next_seg = ? WHERE id = ?", (seg + 1, cid))
            db.execute("INSERT INTO segments (collection_id, seg, rows, dead) VALUES (?, ?, 0, 0)", (cid, seg))
            committed = 0
        else:
            seg, committed = int(last[0]), int(last[1])
        files = SegmentFiles(self.directory, cid, dim)
        if committed and files.rows_length(seg) < committed:  # written before sidecars: rebuild it
            files.rewrite_rows(seg, segment_rows_from_db(db, cid, seg, committed))
        files.append(seg, committed, vectors, rows)
        db.execute(
            "UPDATE segments SET rows = ? WHERE collection_id = ? AND seg = ?", (committed + len(vectors), cid, seg)
        )
        return seg, committed

    def ids_where(self, cid: int, where: Mapping[str, Any]) -> list[str]:
        pred = compile_where(where)
        assert pred is not None
        with self.transaction() as db:
            rows = db.execute("SELECT id, metadata FROM documents WHERE collection_id = ?", (cid,))
            return [doc_id for doc_id, meta in rows if pred(json.loads(meta))]

    def native_search(
        self, cid: int, vectors: np.ndarray, top_k: int, where: Mapping[str, Any] | None, strategy: str
    ) -> list[list[StoreHit]] | None:
        return None  # the index searches in process

    @contextmanager
    def read(self, cid: int) -> Iterator[SQLiteReadView]:
        with self.transaction() as db:
            view = SQLiteReadView(db, cid, self.directory)
            yield view
        if view.stale:
            self.rebuild_sidecars(cid, view.stale)

    def rebuild_sidecars(self, cid: int, segs: Sequence[int]) -> None:
        """Rewrite the row sidecars of segments ``segs`` from the database (a reader found them
        missing, short or wrong and read those segments from SQL). Best effort: a failure leaves
        readers on the SQL path, which is correct."""
        try:
            with self.transaction(write=True) as db:
                row = db.execute("SELECT dim FROM collections WHERE id = ?", (cid,)).fetchone()
                if row is None:
                    return
                files = SegmentFiles(self.directory, cid, int(row[0]))
                committed = dict(db.execute("SELECT seg, rows FROM segments WHERE collection_id = ?", (cid,)))
                for seg in segs:
                    if seg in committed:
                        files.rewrite_rows(seg, segment_rows_from_db(db, cid, seg, int(committed[seg])))
        except (StoreError, sqlite3.DatabaseError) as exc:
            log.warning("could not rebuild the row sidecars of collection %d: %s", cid, exc)

    def get_documents(self, cid: int, ids: Sequence[str]) -> list[tuple[str, str, str]]:
        """``(id, text, metadata JSON)`` for the ids that exist, in the order given."""
        found: dict[str, tuple[str, str, str]] = {}
        with self.transaction() as db:
            for part in batched(ids):
                q = f"SELECT id, text, metadata FROM documents WHERE collection_id = ? AND id IN ({','.join('?' * len(part))})"
                for r in db.execute(q, (cid, *part)):
                    found[r[0]] = r
        return [found[i] for i in ids if i in found]


def segment_rows_from_db(db: sqlite3.Connection, cid: int, seg: int, committed: int) -> np.ndarray:
    """Segment ``seg``'s row sidecar as the database knows it: rows whose chunk is gone (deleted
    before the rebuild) get key -1, which readers treat as dead."""
    out = np.full((committed, ROW_FIELDS), -1, dtype=np.int64)
    for key, doc, idx, start, end, off in db.execute(
        "SELECT rowid, doc_rowid, idx, start_char, end_char, off FROM chunks WHERE collection_id = ? AND seg = ?",
        (cid, seg),
    ):
        if 0 <= off < committed:
            out[off] = (key, doc, idx, start, end)
    return out


def _bury(db: sqlite3.Connection, cid: int, doc_rowid: int, version: int) -> None:
    """Tombstone a document's chunks (before they are deleted) and count them dead in their segments."""
    db.execute(
        "INSERT INTO tombstones (collection_id, version, chunk_rowid) SELECT ?, ?, rowid FROM chunks WHERE doc_rowid = ?",
        (cid, version, doc_rowid),
    )
    for seg, n in db.execute(
        "SELECT seg, count(*) FROM chunks WHERE doc_rowid = ? AND seg IS NOT NULL GROUP BY seg", (doc_rowid,)
    ).fetchall():
        db.execute("UPDATE segments SET dead = dead + ? WHERE collection_id = ? AND seg = ?", (n, cid, seg))
