"""Reads for search from the PostgreSQL store, inside one ``REPEATABLE READ`` transaction: versions,
deltas, passages and metadata (the :class:`~embedserve.index.store.ReadView`), and pgvector's HNSW search.

A delta since version ``v`` is three indexed range reads, as in SQLite: documents written after
``v``, chunk keys tombstoned after ``v``, and chunks with keys above the reader's last. Older than
the collection's ``tomb_floor``: the whole collection.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from embedserve.errors import CollectionNotFound
from embedserve.index.pg_filters import where_sql
from embedserve.index.store import Delta, DocumentState, Passage, StoreHit


class PgReadView:
    def __init__(self, db: Any, cid: int) -> None:
        self._db, self._cid = db, cid

    def version(self) -> int | None:
        r = self._db.execute("SELECT version FROM collections WHERE id = %s", (self._cid,)).fetchone()
        return None if r is None else int(r[0])

    def delta(self, since: int | None, after_key: int, dim: int) -> Delta:
        db, cid = self._db, self._cid
        r = db.execute("SELECT version, tomb_floor FROM collections WHERE id = %s", (cid,)).fetchone()
        if r is None:
            raise CollectionNotFound("the collection was deleted")
        version, floor = int(r[0]), int(r[1])
        full = since is None or since < floor or since > version
        removed = np.zeros(0, np.int64)
        docs: list[tuple[int, str, str, str]] = []
        if full:  # chunks only: hits read their documents (passages), filters the metadata
            after_key = 0
        else:
            docs = db.execute(
                "SELECT key, id, content_hash, metadata::text FROM collection_documents"
                " WHERE collection_id = %s AND version > %s ORDER BY key", (cid, since),
            ).fetchall()
            removed = np.array([t[0] for t in db.execute(
                "SELECT chunk_key FROM collection_tombstones WHERE collection_id = %s AND version > %s",
                (cid, since),
            ).fetchall()], dtype=np.int64)
        states = [DocumentState(int(k), i, h, json.loads(m)) for k, i, h, m in docs]
        with db.cursor(binary=True) as cur:  # vectors come back as numpy arrays, no text parsing
            rows = cur.execute(
                "SELECT key, doc_key, idx, start_char, end_char, embedding FROM collection_chunks"
                " WHERE collection_id = %s AND key > %s ORDER BY key", (cid, after_key),
            ).fetchall()
        n = len(rows)
        ints = np.array([r[:5] for r in rows], dtype=np.int64).reshape(n, 5)
        vectors = (
            np.vstack([np.asarray(r[5].to_numpy() if hasattr(r[5], "to_numpy") else r[5], np.float32)
                       for r in rows])
            if n else np.zeros((0, dim), np.float32)
        )
        return Delta(
            version=version, full=full, documents=states, removed=removed, chunk_keys=ints[:, 0].copy(),
            chunk_docs=ints[:, 1].copy(), chunk_index=ints[:, 2].copy(), chunk_start=ints[:, 3].copy(),
            chunk_end=ints[:, 4].copy(), vectors=vectors,
        )

    def passages(self, wanted: Sequence[tuple[int, int, int]]) -> list[Passage | None]:
        out: list[Passage | None] = []
        for key, start, end in wanted:
            r = self._db.execute(
                "SELECT id, substr(text, %s, %s), metadata::text, content_hash FROM collection_documents"
                " WHERE key = %s AND collection_id = %s", (start + 1, end - start, key, self._cid),
            ).fetchone()
            out.append(Passage(r[0], r[1], json.loads(r[2]), r[3]) if r else None)
        return out

    def metadata(self) -> dict[int, dict[str, Any]]:
        return {
            int(k): json.loads(m) for k, m in self._db.execute(
                "SELECT key, metadata::text FROM collection_documents WHERE collection_id = %s", (self._cid,)
            ).fetchall()
        }


def hnsw_search(
    db: Any, cid: int, dim: int, query: np.ndarray, top_k: int, where: Mapping[str, Any] | None
) -> list[StoreHit]:
    """The best chunk of each of the ``top_k`` best documents, by pgvector's HNSW index (inner
    product of unit vectors = cosine). Filters use pgvector's iterative index scans."""
    sql, params = where_sql(where, "d.metadata")
    want = max(top_k * 4, 40)  # chunks, so that top_k distinct documents survive
    db.execute(f"SET LOCAL hnsw.ef_search = {min(1000, max(64, want))}")
    db.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
    q = np.asarray(query, np.float32)
    from pgvector import Vector

    rows = db.execute(
        f"SELECT d.id, c.idx, c.start_char, c.end_char, (c.embedding::vector({dim}) <#> %s) AS dist"
        " FROM collection_chunks c JOIN collection_documents d ON d.key = c.doc_key"
        f" WHERE c.collection_id = %s AND {sql}"
        f" ORDER BY c.embedding::vector({dim}) <#> %s LIMIT %s",
        (Vector(q), cid, *params, Vector(q), want),
    ).fetchall()
    best: dict[str, StoreHit] = {}
    for doc_id, idx, start, end, dist in sorted(rows, key=lambda r: r[4]):
        if doc_id not in best:
            best[doc_id] = StoreHit(doc_id, int(idx), int(start), int(end), float(-dist))
    return list(best.values())[:top_k]
