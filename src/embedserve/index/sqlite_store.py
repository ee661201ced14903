"""The embedded store: one SQLite database (WAL mode) under ``Settings.collections_dir``.

Tables: ``collections`` (name, pinned model and digest, chunk settings, a ``version`` bumped by
every write), ``documents`` (id, content hash, text, metadata JSON) and ``chunks`` (character
span and float32 vector blob per chunk). The schema is versioned by a ``_migrations`` table, as in
simonw/llm: each migration runs once, in order, inside a write transaction.

Concurrency: WAL lets readers go on while one writer commits; ``busy_timeout`` makes a second
writer (the server and a CLI ``index add`` at once) wait instead of failing; writers keep their
transactions short (embedding happens before the transaction starts). A read transaction sees one
snapshot, so a query never mixes two states of a collection.
"""

from __future__ import annotations

import json
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
from embedserve.index.store import (
    CollectionRow,
    Delta,
    DocumentState,
    DocumentWrite,
    StoreHit,
    batched,
)

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


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("m001_initial", _m001_initial),
]
SCHEMA_VERSION = len(MIGRATIONS)


class SQLiteStore:
    """The :class:`~embedserve.index.store.CollectionStore` over one SQLite database: a connection
    safe to share between threads (one lock)."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / DB_NAME
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
            cur = db.execute("DELETE FROM collections WHERE name = ?", (name,))
            return cur.rowcount > 0

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
            if db.execute("SELECT 1 FROM collections WHERE id = ?", (cid,)).fetchone() is None:
                raise CollectionNotFound("the collection was deleted while documents were being added")
            for doc_id in deletes:
                db.execute("DELETE FROM documents WHERE collection_id = ? AND id = ?", (cid, doc_id))
            for doc_id, meta in metadata_only:
                db.execute(
                    "UPDATE documents SET metadata = ?, updated_at = ? WHERE collection_id = ? AND id = ?",
                    (meta, now, cid, doc_id),
                )
            for d in upserts:
                row = db.execute(
                    "SELECT rowid FROM documents WHERE collection_id = ? AND id = ?", (cid, d.id)
                ).fetchone()
                if row is None:
                    cur = db.execute(
                        "INSERT INTO documents (collection_id, id, content_hash, text, metadata, updated_at)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (cid, d.id, d.content_hash, d.text, d.metadata, now),
                    )
                    doc_rowid = cur.lastrowid
                else:
                    doc_rowid = row[0]
                    db.execute("DELETE FROM chunks WHERE doc_rowid = ?", (doc_rowid,))
                    db.execute(
                        "UPDATE documents SET content_hash = ?, text = ?, metadata = ?, updated_at = ? WHERE rowid = ?",
                        (d.content_hash, d.text, d.metadata, now, doc_rowid),
                    )
                db.executemany(
                    "INSERT INTO chunks (collection_id, doc_rowid, idx, start_char, end_char, embedding)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(cid, doc_rowid, c.index, c.start, c.end, np.asarray(c.vector, np.float32).tobytes())
                     for c in d.chunks],
                )
            db.execute(
                "UPDATE collections SET version = version + 1, updated_at = ? WHERE id = ?", (now, cid)
            )

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
    def read(self, cid: int) -> Iterator[_ReadView]:
        with self.transaction() as db:
            yield _ReadView(self, db, cid)

    def get_documents(self, cid: int, ids: Sequence[str]) -> list[tuple[str, str, str]]:
        """``(id, text, metadata JSON)`` for the ids that exist, in the order given."""
        found: dict[str, tuple[str, str, str]] = {}
        with self.transaction() as db:
            for part in batched(ids):
                q = f"SELECT id, text, metadata FROM documents WHERE collection_id = ? AND id IN ({','.join('?' * len(part))})"
                for r in db.execute(q, (cid, *part)):
                    found[r[0]] = r
        return [found[i] for i in ids if i in found]



class _ReadView:
    """Reads inside one SQLite read transaction (one snapshot)."""

    def __init__(self, store: SQLiteStore, db: sqlite3.Connection, cid: int) -> None:
        self._store, self._db, self._cid = store, db, cid

    def version(self) -> int | None:
        return self._store.version(self._cid, self._db)

    def delta(self, since: int | None, after_key: int, dim: int) -> Delta:
        """Everything, always (``full``): this schema keeps no tombstones."""
        db, cid = self._db, self._cid
        version = self.version()
        if version is None:
            raise CollectionNotFound("the collection was deleted")
        docs = [
            DocumentState(rowid, doc_id, h, json.loads(meta))
            for rowid, doc_id, h, meta in db.execute(
                "SELECT rowid, id, content_hash, metadata FROM documents WHERE collection_id = ? ORDER BY rowid",
                (cid,),
            )
        ]
        rows = db.execute(
            "SELECT rowid, doc_rowid, idx, start_char, end_char, embedding FROM chunks"
            " WHERE collection_id = ? ORDER BY rowid",
            (cid,),
        ).fetchall()
        n = len(rows)
        blob = b"".join(r[5] for r in rows)
        vectors = np.frombuffer(blob, dtype=np.float32).reshape(n, dim) if n else np.zeros((0, dim), np.float32)
        ints = np.array([r[:5] for r in rows], dtype=np.int64).reshape(n, 5)
        return Delta(
            version=version, full=True, documents=docs, chunk_keys=ints[:, 0].copy(),
            chunk_docs=ints[:, 1].copy(), chunk_index=ints[:, 2].copy(), chunk_start=ints[:, 3].copy(),
            chunk_end=ints[:, 4].copy(), vectors=vectors,
        )

    def passages(self, wanted: Sequence[tuple[str, int, int]]) -> list[tuple[str, str] | None]:
        out: list[tuple[str, str] | None] = []
        for doc_id, start, end in wanted:
            row = self._db.execute(
                "SELECT substr(text, ?, ?), content_hash FROM documents WHERE collection_id = ? AND id = ?",
                (start + 1, end - start, self._cid, doc_id),
            ).fetchone()
            out.append((row[0], row[1]) if row else None)
        return out
