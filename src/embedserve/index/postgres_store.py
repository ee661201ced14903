"""The PostgreSQL + pgvector backend of :class:`~embedserve.index.store.CollectionStore`
(``EMBEDSERVE_DATABASE_URL=postgresql://...``; the ``postgres`` extra: psycopg 3 and pgvector).

Several servers (or Ray replicas) can share one set of collections this way. Tables (created on
first connect, with ``CREATE EXTENSION IF NOT EXISTS vector``, which needs a role allowed to):

- ``collections``: as in SQLite, plus ``tomb_floor`` (tombstones at or below it are forgotten);
- ``collection_documents``: ``key`` (bigserial), id, hash, text, ``metadata jsonb``, the version
  that last wrote it;
- ``collection_chunks``: ``key`` (bigserial, so "newer than key k" is a range), the document's key,
  index, span and ``embedding vector``; each collection gets its own partial HNSW index over
  ``embedding::vector(dim)`` (``vector_ip_ops``: vectors are unit length) on its first ``ann``
  query, kept up to date by every write after that;
- ``collection_tombstones``: chunk keys removed by each version, for incremental readers.

Writers of one collection are serialised by a row lock on the collection (``SELECT ... FOR
UPDATE``), so chunk keys grow in commit order and a reader that has seen key k never misses a
smaller one committed later. A read view is one ``REPEATABLE READ`` transaction. ``where`` filters
become SQL over ``jsonb`` (``pg_filters.py``). Exact, int8 and binary search run in process on the
same deltas as SQLite (identical results); ``strategy="ann"`` uses pgvector's HNSW in the database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from embedserve.errors import CollectionNotFound, StoreError
from embedserve.index.pg_filters import where_sql
from embedserve.index.postgres_reads import PgReadView, hnsw_search
from embedserve.index.store import CollectionRow, DocumentWrite, StoreHit

TOMBSTONE_VERSIONS = 1024  # versions of tombstones kept for incremental readers
_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS collections (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    digest TEXT NOT NULL,
    dim INTEGER NOT NULL,
    max_tokens INTEGER NOT NULL,
    chunk_tokens INTEGER NOT NULL,
    overlap INTEGER NOT NULL,
    version BIGINT NOT NULL DEFAULT 0,
    tomb_floor BIGINT NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS collection_documents (
    key BIGSERIAL PRIMARY KEY,
    collection_id BIGINT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata JSONB NOT NULL DEFAULT '{}',
    version BIGINT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (collection_id, id)
);
CREATE INDEX IF NOT EXISTS collection_documents_by_version ON collection_documents (collection_id, version);
CREATE TABLE IF NOT EXISTS collection_chunks (
    key BIGSERIAL PRIMARY KEY,
    collection_id BIGINT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    doc_key BIGINT NOT NULL REFERENCES collection_documents(key) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    start_char INTEGER NOT NULL,
    end_char INTEGER NOT NULL,
    embedding vector NOT NULL
);
CREATE INDEX IF NOT EXISTS collection_chunks_by_key ON collection_chunks (collection_id, key);
CREATE INDEX IF NOT EXISTS collection_chunks_by_doc ON collection_chunks (doc_key);
CREATE TABLE IF NOT EXISTS collection_tombstones (
    collection_id BIGINT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    chunk_key BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS collection_tombstones_by_version ON collection_tombstones (collection_id, version)
"""
_COLS = "id, name, model, digest, dim, max_tokens, chunk_tokens, overlap, version, created_at, updated_at"


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
    return url


def _row(r: Sequence[Any]) -> CollectionRow:
    return CollectionRow(
        int(r[0]), r[1], r[2], r[3], int(r[4]), int(r[5]), int(r[6]), int(r[7]), int(r[8]),
        float(r[9]), float(r[10]),
    )


class PostgresStore:
    """One connection (and one lock) to a PostgreSQL database, safe to share between threads."""

    def __init__(self, url: str) -> None:
        try:
            import psycopg
            from pgvector.psycopg import register_vector
        except ImportError:
            raise StoreError(
                "EMBEDSERVE_DATABASE_URL needs the PostgreSQL driver: pip install 'embedserve[postgres]'"
            ) from None
        self._psycopg = psycopg
        self.url = url
        self._lock = threading.RLock()
        self._hnsw: set[int] = set()  # collections whose HNSW index this process has ensured
        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(7262400011)")  # one migrator
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
            register_vector(self._conn)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot use the collections database {safe_url(url)}: {str(exc).strip().splitlines()[0]}"
            ) from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[Any]:
        with self._lock:
            try:
                with self._conn.transaction():
                    if not write:
                        self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    yield self._conn
            except self._psycopg.OperationalError as exc:
                raise StoreError(
                    f"collections database {safe_url(self.url)} unavailable: {str(exc).strip()}"
                ) from None

    # -- collections ----------------------------------------------------------------------------

    def get_collection(self, name: str) -> CollectionRow | None:
        with self.transaction() as db:
            r = db.execute(f"SELECT {_COLS} FROM collections WHERE name = %s", (name,)).fetchone()
        return _row(r) if r else None

    def create_collection(
        self, name: str, *, model: str, digest: str, dim: int, max_tokens: int, chunk_tokens: int, overlap: int
    ) -> CollectionRow:
        now = time.time()
        with self.transaction(write=True) as db:
            db.execute(
                "INSERT INTO collections (name, model, digest, dim, max_tokens, chunk_tokens, overlap,"
                " created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (name) DO NOTHING",
                (name, model, digest, dim, max_tokens, chunk_tokens, overlap, now, now),
            )
            r = db.execute(f"SELECT {_COLS} FROM collections WHERE name = %s", (name,)).fetchone()
        return _row(r)

    def _ensure_hnsw(self, cid: int) -> int:
        """The collection's HNSW index, built on its first ``ann`` query (a bulk build is far
        cheaper than growing it insert by insert: measured, pgvector's index maintenance was ~98 %
        of an add's time), then kept up to date by every write. Returns the dimension."""
        with self.transaction(write=True) as db:
            r = db.execute("SELECT dim FROM collections WHERE id = %s", (cid,)).fetchone()
            if r is None:
                raise CollectionNotFound("the collection was deleted")
            dim = int(r[0])
            if cid not in self._hnsw:
                db.execute(  # ints only: safe to format
                    f"CREATE INDEX IF NOT EXISTS collection_chunks_hnsw_{cid} ON collection_chunks"
                    f" USING hnsw ((embedding::vector({dim})) vector_ip_ops) WHERE collection_id = {cid}"
                )
                self._hnsw.add(cid)
        return dim

    def list_collections(self) -> list[tuple[CollectionRow, int, int]]:
        with self.transaction() as db:
            rows = db.execute(
                f"SELECT {_COLS}, (SELECT count(*) FROM collection_documents d WHERE d.collection_id = c.id),"
                " (SELECT count(*) FROM collection_chunks k WHERE k.collection_id = c.id)"
                " FROM collections c ORDER BY name"
            ).fetchall()
        return [(_row(r[:11]), int(r[11]), int(r[12])) for r in rows]

    def drop_collection(self, name: str) -> bool:
        with self.transaction(write=True) as db:
            r = db.execute("DELETE FROM collections WHERE name = %s RETURNING id", (name,)).fetchone()
            if r is not None:
                db.execute(f"DROP INDEX IF EXISTS collection_chunks_hnsw_{int(r[0])}")
                self._hnsw.discard(int(r[0]))
        return r is not None

    def counts(self, cid: int) -> tuple[int, int]:
        with self.transaction() as db:
            docs = db.execute("SELECT count(*) FROM collection_documents WHERE collection_id = %s", (cid,))
            n_docs = int(docs.fetchone()[0])
            chunks = db.execute("SELECT count(*) FROM collection_chunks WHERE collection_id = %s", (cid,))
            return n_docs, int(chunks.fetchone()[0])

    def version(self, cid: int) -> int | None:
        with self.transaction() as db:
            r = db.execute("SELECT version FROM collections WHERE id = %s", (cid,)).fetchone()
        return None if r is None else int(r[0])

    # -- documents ------------------------------------------------------------------------------

    def hashes(self, cid: int, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        with self.transaction() as db:
            rows = db.execute(
                "SELECT id, content_hash, metadata::text FROM collection_documents"
                " WHERE collection_id = %s AND id = ANY(%s)", (cid, list(ids)),
            ).fetchall()
        return {i: (h, _canonical(m)) for i, h, m in rows}

    def write(
        self,
        cid: int,
        upserts: Sequence[DocumentWrite] = (),
        metadata_only: Sequence[tuple[str, str]] = (),
        deletes: Sequence[str] = (),
    ) -> None:
        now = time.time()
        with self.transaction(write=True) as db:
            r = db.execute(  # serialises this collection's writers: chunk keys grow in commit order
                "SELECT version, tomb_floor FROM collections WHERE id = %s FOR UPDATE", (cid,)
            ).fetchone()
            if r is None:
                raise CollectionNotFound("the collection was deleted while documents were being added")
            v = int(r[0]) + 1
            replaced = list(deletes)
            existing = dict(db.execute(
                "SELECT id, key FROM collection_documents WHERE collection_id = %s AND id = ANY(%s)",
                (cid, [d.id for d in upserts] + replaced),
            ).fetchall())
            buried = [existing[i] for i in dict.fromkeys([*replaced, *(d.id for d in upserts)]) if i in existing]
            if buried:
                db.execute(
                    "INSERT INTO collection_tombstones (collection_id, version, chunk_key)"
                    " SELECT %s, %s, key FROM collection_chunks WHERE doc_key = ANY(%s)", (cid, v, buried),
                )
                db.execute("DELETE FROM collection_chunks WHERE doc_key = ANY(%s)", (buried,))
            gone = [existing[i] for i in replaced if i in existing]
            if gone:
                db.execute("DELETE FROM collection_documents WHERE key = ANY(%s)", (gone,))
            with db.cursor() as cur:
                if metadata_only:
                    cur.executemany(
                        "UPDATE collection_documents SET metadata = %s::jsonb, updated_at = %s, version = %s"
                        " WHERE collection_id = %s AND id = %s",
                        [(m, now, v, cid, i) for i, m in metadata_only],
                    )
                keys: dict[str, int] = {}
                changed = [d for d in upserts if d.id in existing]
                if changed:
                    cur.executemany(
                        "UPDATE collection_documents SET content_hash = %s, text = %s, metadata = %s::jsonb,"
                        " updated_at = %s, version = %s WHERE key = %s",
                        [(d.content_hash, d.text, d.metadata, now, v, existing[d.id]) for d in changed],
                    )
                    keys.update((d.id, existing[d.id]) for d in changed)
                new = [d for d in upserts if d.id not in existing]
                if new:
                    cur.executemany(
                        "INSERT INTO collection_documents (collection_id, id, content_hash, text, metadata,"
                        " version, updated_at) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s) RETURNING key",
                        [(cid, d.id, d.content_hash, d.text, d.metadata, v, now) for d in new],
                        returning=True,
                    )
                    for d in new:
                        keys[d.id] = int(cur.fetchone()[0])  # type: ignore[index]
                        cur.nextset()
                self._copy_chunks(cur, cid, upserts, keys)
            floor = int(r[1])
            if v - floor > 2 * TOMBSTONE_VERSIONS:  # forget old tombstones: such readers reload
                floor = v - TOMBSTONE_VERSIONS
                db.execute(
                    "DELETE FROM collection_tombstones WHERE collection_id = %s AND version <= %s", (cid, floor)
                )
            db.execute(
                "UPDATE collections SET version = %s, tomb_floor = %s, updated_at = %s WHERE id = %s",
                (v, floor, now, cid),
            )

    @staticmethod
    def _copy_chunks(cur: Any, cid: int, upserts: Sequence[DocumentWrite], keys: dict[str, int]) -> None:
        rows = [(cid, keys[d.id], c.index, c.start, c.end, np.asarray(c.vector, np.float32))
                for d in upserts for c in d.chunks]
        if not rows:
            return
        with cur.copy(
            "COPY collection_chunks (collection_id, doc_key, idx, start_char, end_char, embedding)"
            " FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "int8", "int4", "int4", "int4", "vector"])
            for row in rows:
                copy.write_row(row)

    def ids_where(self, cid: int, where: Mapping[str, Any]) -> list[str]:
        sql, params = where_sql(where)
        with self.transaction() as db:
            rows = db.execute(
                f"SELECT id FROM collection_documents WHERE collection_id = %s AND {sql} ORDER BY key",
                (cid, *params),
            ).fetchall()
        return [r[0] for r in rows]

    def get_documents(self, cid: int, ids: Sequence[str]) -> list[tuple[str, str, str]]:
        with self.transaction() as db:
            rows = db.execute(
                "SELECT id, text, metadata::text FROM collection_documents WHERE collection_id = %s AND id = ANY(%s)",
                (cid, list(ids)),
            ).fetchall()
        found = {r[0]: (r[0], r[1], _canonical(r[2])) for r in rows}
        return [found[i] for i in ids if i in found]

    # -- reads for search -----------------------------------------------------------------------

    @contextmanager
    def read(self, cid: int) -> Iterator[PgReadView]:
        with self.transaction() as db:
            yield PgReadView(db, cid)

    def native_search(
        self, cid: int, vectors: np.ndarray, top_k: int, where: Mapping[str, Any] | None, strategy: str
    ) -> list[list[StoreHit]] | None:
        """``strategy="ann"``: pgvector's HNSW index; anything else searches in process."""
        if strategy != "ann":
            return None
        dim = self._ensure_hnsw(cid)
        with self.transaction() as db:
            return [hnsw_search(db, cid, dim, q, top_k, where) for q in vectors]


def _canonical(metadata: str) -> str:
    """jsonb's text as the index writes metadata (``json.dumps(sort_keys=True)``), so unchanged
    metadata compares equal."""
    import json

    return json.dumps(json.loads(metadata), ensure_ascii=False, sort_keys=True)
