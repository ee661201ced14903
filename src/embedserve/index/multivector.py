"""A collection's ``multivector`` mode: compressed token vectors of every chunk beside its dense one.

The dense vector still finds candidates (exact, binary or ANN, as before); a query in this mode
(``query(..., rerank="maxsim", candidates=N)``) then re-scores the top ``N`` chunks by MaxSim
between the query's token vectors and each chunk's (the collection's own model, as the naive
ColBERT recipe does with a single-vector model; a ColBERT model's own vectors when the collection
uses one).

Token vectors live in a sidecar SQLite file, ``<collections dir>/tokens-<collection id>.sqlite``
(its existence turns the mode on; :func:`enable`), one row per chunk keyed by (document id, chunk
index, sha256 of the chunk's text), so a re-embedded chunk never scores with stale vectors. Codecs
(:func:`embedserve.late_interaction.quantize_tokens`): ``int8`` (one byte a value plus a float
scale per token: 1/4 of float32; re-scored as stored), ``binary`` (sign bits: 1/32; scored
asymmetrically, the float query against +-1 tokens), ``float32``. Chunks added before the mode was
enabled get their vectors on first use. A chunk's dense and token vectors come from one run of the
model (``encode_documents`` with an encoder that has ``encode_with_tokens``), unless a document
prompt makes the two inputs differ.

Lifecycle. Dropping the collection removes the file (:func:`remove`, with its WAL files). A
re-embedded document's rows are replaced as a whole (a text that shrank to fewer chunks leaves no
rows behind); deleting documents deletes their rows. The dense write commits first and the token
rows after it: a crash in between leaves missing rows (made on first use) or rows whose hash no
longer matches (never used; replaced on the next write of that document; :meth:`TokenStore.vacuum`
drops rows of documents gone). The file records its collection's name and creation time, so a
file left by a collection of another database that had the same id (a new SQLite file, another
PostgreSQL database) is discarded instead of turning the mode on. With PostgreSQL the file is
local to each server, like the ANN index files.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedserve.errors import CollectionError
from embedserve.late_interaction import TOKEN_CODECS, dequantize_tokens, quantize_tokens

Key = tuple[str, int, str]  # document id, chunk index, sha256 of the chunk text


def text_key(doc_id: str, chunk: int, text: str) -> Key:
    return doc_id, int(chunk), hashlib.sha256(text.encode("utf-8")).hexdigest()


def sidecar_path(collection: Any) -> Path:
    return _path(collection.settings.collections_dir, collection._row.id)


def _path(collections_dir: Path, cid: int) -> Path:
    return Path(collections_dir) / f"tokens-{cid}.sqlite"


def _owner(collection: Any) -> str:
    return f"{collection._row.name}@{collection._row.created_at!r}"


class StaleSidecar(Exception):
    """The file belongs to another collection that had the same id."""


class TokenStore:
    def __init__(self, path: Path, codec: str | None = None, owner: str | None = None) -> None:
        if codec is not None and codec not in TOKEN_CODECS:
            raise CollectionError(
                f"unknown multivector codec {codec!r}; choose one of: {', '.join(TOKEN_CODECS)}"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS tokens (doc TEXT, chunk INTEGER, hash TEXT, n INTEGER,"
            " dim INTEGER, codes BLOB, scales BLOB, PRIMARY KEY (doc, chunk))"
        )
        if owner is not None:
            mine = self._db.execute("SELECT value FROM meta WHERE key='owner'").fetchone()
            if mine is None:  # a new file, or one written before owners were recorded
                self._db.execute("INSERT INTO meta VALUES ('owner', ?)", (owner,))
                self._db.commit()
            elif mine[0] != owner:
                self._db.close()
                raise StaleSidecar(str(path))
        row = self._db.execute("SELECT value FROM meta WHERE key='codec'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('codec', ?)", (codec or "int8",))
            self._db.commit()
            self.codec = codec or "int8"
        else:
            self.codec = str(row[0])
            if codec is not None and codec != self.codec:
                raise CollectionError(f"the collection's multivector codec is {self.codec}, not {codec}")

    def close(self) -> None:
        self._db.close()

    def put(self, keys: Sequence[Key], tokens: Sequence[np.ndarray]) -> None:
        self.replace([], keys, tokens)

    def replace(self, docs: Sequence[str], keys: Sequence[Key], tokens: Sequence[np.ndarray]) -> None:
        """Drop every row of ``docs``, then store ``keys``' token vectors, in one transaction."""
        rows = []
        for (doc, chunk, h), t in zip(keys, tokens):
            codes, scales = quantize_tokens(t, self.codec)
            rows.append((doc, chunk, h, int(t.shape[0]), int(t.shape[1]), codes.tobytes(),
                         None if scales is None else scales.tobytes()))
        with self._lock, self._db:  # commits, or rolls back on an error
            self._db.executemany("DELETE FROM tokens WHERE doc=?", [(d,) for d in dict.fromkeys(docs)])
            self._db.executemany("INSERT OR REPLACE INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def delete(self, docs: Sequence[str]) -> None:
        self.replace(docs, [], [])

    def get(self, keys: Sequence[Key]) -> list[np.ndarray | None]:
        """Float32 token vectors per key (None where missing or stale)."""
        out: list[np.ndarray | None] = [None] * len(keys)
        where = {(d, c): i for i, (d, c, _) in enumerate(keys)}
        with self._lock:
            for start in range(0, len(keys), 400):
                part = keys[start : start + 400]
                clause = " OR ".join("(doc=? AND chunk=?)" for _ in part)
                args = [v for d, c, _ in part for v in (d, c)]
                for doc, chunk, h, n, dim, codes, scales in self._db.execute(
                    f"SELECT doc, chunk, hash, n, dim, codes, scales FROM tokens WHERE {clause}", args
                ):
                    i = where[(doc, chunk)]
                    if keys[i][2] != h:
                        continue
                    out[i] = self._decode(codes, scales, n, dim)
        return out

    def _decode(self, codes: bytes, scales: bytes | None, n: int, dim: int) -> np.ndarray:
        if self.codec == "float32":
            return np.frombuffer(codes, np.float32).reshape(n, dim)
        if self.codec == "int8":
            s = np.frombuffer(scales or b"", np.float32)
            return dequantize_tokens(np.frombuffer(codes, np.int8).reshape(n, dim), s, "int8", dim)
        packed = np.frombuffer(codes, np.uint8).reshape(n, (dim + 7) // 8)
        return dequantize_tokens(packed, None, "binary", dim)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            chunks, tokens, size = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(n), 0),"
                " COALESCE(SUM(LENGTH(codes) + COALESCE(LENGTH(scales), 0)), 0) FROM tokens"
            ).fetchone()
        return {"codec": self.codec, "chunks": chunks, "tokens": tokens, "bytes": size,
                "bytes_per_chunk": size / chunks if chunks else 0.0}

    def vacuum(self, live_docs: set[str]) -> int:
        """Drop the rows of documents no longer in the collection; returns how many."""
        with self._lock:
            docs = [d for (d,) in self._db.execute("SELECT DISTINCT doc FROM tokens")]
            gone = [d for d in docs if d not in live_docs]
            self._db.executemany("DELETE FROM tokens WHERE doc=?", [(d,) for d in gone])
            self._db.commit()
        return len(gone)


_open: dict[Path, TokenStore] = {}
_open_lock = threading.Lock()


def _unlink(path: Path) -> None:
    ts = _open.pop(path, None)
    if ts is not None:
        ts.close()
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def remove(collections_dir: Path, cid: int) -> None:
    """Delete collection ``cid``'s token file (when its collection is dropped)."""
    with _open_lock:
        _unlink(_path(collections_dir, cid))


def store_for(collection: Any, codec: str | None = None, create: bool = False) -> TokenStore | None:
    """The collection's token store (None when the mode is off and ``create`` is false)."""
    path = sidecar_path(collection)
    with _open_lock:
        ts = _open.get(path)
        if ts is not None and not path.exists():  # dropped by another process
            _unlink(path)
            ts = None
        if ts is None:
            if not create and not path.exists():
                return None
            try:
                ts = TokenStore(path, codec, _owner(collection))
            except StaleSidecar:
                _unlink(path)
                if not create:
                    return None
                ts = TokenStore(path, codec, _owner(collection))
            _open[path] = ts
        elif codec is not None and codec != ts.codec:
            raise CollectionError(f"the collection's multivector codec is {ts.codec}, not {codec}")
        return ts


def enable(collection: Any, codec: str = "int8") -> TokenStore:
    """Turn ``multivector`` mode on for a collection (token vectors of chunks added from now on,
    and of older ones on first use)."""
    ts = store_for(collection, codec, create=True)
    assert ts is not None
    return ts


def encode_tokens(encoder: Any, texts: list[str], role: str = "document") -> list[np.ndarray]:
    try:
        out = list(encoder.encode(texts, output="token", role=role))
    except TypeError:
        out = []
    if len(out) != len(texts) or any(np.ndim(v) != 2 for v in out):
        raise CollectionError("multivector mode needs an encoder with encode(..., output='token')")
    return [np.asarray(v, np.float32) for v in out]


def enabled(collection: Any) -> bool:
    return store_for(collection) is not None


def after_add(
    collection: Any,
    encoder: Any,
    docs: Sequence[str],
    chunks: list[tuple[str, int, str]],
    tokens: list[np.ndarray] | None = None,
) -> None:
    """When on: replace the rows of the written documents ``docs`` by the token vectors of their
    freshly embedded chunks ``(doc id, chunk index, text)`` (documents that brought their own
    vector get theirs on first use): ``tokens``, made with the chunks' dense vectors
    (``encode_documents``), or else made now."""
    ts = store_for(collection)
    if ts is None or not docs:
        return
    keys = [text_key(d, c, t) for d, c, t in chunks]
    if tokens is None:
        tokens = encode_tokens(encoder, [t for _, _, t in chunks]) if chunks else []
    ts.replace(docs, keys, tokens)


def after_delete(collection: Any, docs: Sequence[str]) -> None:
    """When on: delete the rows of deleted documents."""
    ts = store_for(collection)
    if ts is not None and docs:
        ts.delete(docs)


def chunk_tokens(collection: Any, encoder: Any, hits: Sequence[Any]) -> list[np.ndarray]:
    """Token vectors of the hits' chunks: stored, or computed and stored now."""
    ts = store_for(collection)
    if ts is None:
        raise CollectionError(
            f"collection {collection.name!r} is not in multivector mode (enable it first)"
        )
    keys = [text_key(h.id, h.chunk.index, h.text) for h in hits]
    found = ts.get(keys)
    missing = [i for i, v in enumerate(found) if v is None]
    if missing:
        fresh = encode_tokens(encoder, [hits[i].text for i in missing])
        ts.put([keys[i] for i in missing], fresh)
        for i, v in zip(missing, fresh):
            found[i] = v
    return [v for v in found if v is not None]
