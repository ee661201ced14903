"""What a collections backend must do: the store protocol behind :class:`~embedserve.index.collection.Collection`.

``Collection`` (chunking, embedding, hashing, search) talks only to this protocol; ``sqlite_store``
is its first implementation, a PostgreSQL + pgvector backend the second, and one test suite runs
against both. A backend stores:

- **collections**: a name, the pinned model (name, weights digest, dimension, window) and chunk
  settings, and a ``version`` that every committed write bumps by one;
- **documents**: ``id`` (unique in a collection), ``content_hash``, ``text``, metadata (JSON object),
  and a *key*: an integer the backend assigns on insert and keeps while the document exists;
- **chunks**: the document's key, ``index`` in the document, character span ``[start, end)`` and a
  float32 vector, and a chunk *key*: an integer that increases with every chunk written to the
  collection and is never reused, so "chunks newer than key k" is a range.

Writes are whole or nothing (one transaction per :meth:`CollectionStore.write`) and visible to
every reader, in this process or another, once ``write`` returns.

Reads for search are incremental: a reader keeps what it loaded and asks :meth:`ReadView.delta`
for what changed since its version (documents written, chunk keys removed, chunks added), so a
query after a one-document write costs O(that document), not O(collection). A backend that cannot
answer since an old version (it has forgotten those tombstones) answers ``full=True`` with every
chunk. A reader holds chunks (keys, document keys, spans, vectors), not documents: the ids, texts
and metadata of a query's hits come from :meth:`ReadView.passages`, and the metadata of every
document from :meth:`ReadView.metadata` only when a ``where`` filter needs it, so opening a
collection of a million chunks reads no per-document rows.

Vector search itself stays in the index (exact, int8/binary with rescoring, HNSW) unless the
backend offers :meth:`CollectionStore.native_search` (pgvector's HNSW, say) and returns hits
instead of ``None``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class CollectionRow:
    id: int
    name: str
    model: str
    digest: str
    dim: int
    max_tokens: int
    chunk_tokens: int
    overlap: int
    version: int
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class ChunkData:
    """One chunk to write: position in its document, character span, vector (float32, ``dim``)."""

    index: int
    start: int
    end: int
    vector: np.ndarray


@dataclass(frozen=True)
class DocumentWrite:
    """A document to insert or replace (its old chunks are removed). ``metadata`` is JSON text
    (sorted keys), so equal metadata compares equal as strings."""

    id: str
    content_hash: str
    text: str
    metadata: str
    chunks: Sequence[ChunkData]


@dataclass(frozen=True)
class DocumentState:
    """A document as a reader sees it: the backend's key, id, hash and parsed metadata."""

    key: int
    id: str
    content_hash: str
    metadata: dict[str, Any]


def _ints(n: int = 0) -> np.ndarray:
    return np.zeros(n, dtype=np.int64)


@dataclass
class Delta:
    """What changed in a collection between a reader's version and ``version``.

    ``full``: the reader must drop what it had and take this as the whole state (first load, or
    the backend no longer knows the changes since the reader's version); ``documents`` is empty
    then (see :meth:`ReadView.metadata`). Otherwise ``documents`` were inserted or changed
    (replace by key). ``removed`` are chunk keys deleted since (in a full delta: chunks listed in
    the arrays that are already dead), and the chunk arrays hold chunks added since, keys
    ascending and all above the reader's last key.
    """

    version: int
    full: bool
    documents: list[DocumentState] = field(default_factory=list)
    removed: np.ndarray = field(default_factory=_ints)  # chunk keys
    chunk_keys: np.ndarray = field(default_factory=_ints)
    chunk_docs: np.ndarray = field(default_factory=_ints)  # document keys
    chunk_index: np.ndarray = field(default_factory=_ints)
    chunk_start: np.ndarray = field(default_factory=_ints)
    chunk_end: np.ndarray = field(default_factory=_ints)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))


@dataclass(frozen=True)
class Passage:
    """A hit's document as one read transaction sees it: ``text`` is ``text[start:end]``."""

    id: str
    text: str
    metadata: dict[str, Any]
    content_hash: str


@dataclass(frozen=True)
class StoreHit:
    """A hit from a backend's own search: the document id, the chunk and its cosine score."""

    id: str
    chunk_index: int
    start: int
    end: int
    score: float


class ReadView(Protocol):
    """One consistent snapshot of a collection (a read transaction), used for one query."""

    def version(self) -> int | None:
        """The collection's version, ``None`` when it no longer exists."""

    def delta(self, since: int | None, after_key: int, dim: int) -> Delta:
        """Changes since version ``since`` (``None``: everything); chunks with keys above ``after_key``."""

    def passages(self, wanted: Sequence[tuple[int, int, int]]) -> list[Passage | None]:
        """The document and ``text[start:end]`` for each ``(document key, start, end)``; ``None`` if gone."""

    def metadata(self) -> dict[int, dict[str, Any]]:
        """Every document's metadata, by document key."""


class CollectionStore(Protocol):
    """A connection to a collections backend, safe to share between threads."""

    def close(self) -> None: ...

    # collections
    def get_collection(self, name: str) -> CollectionRow | None: ...

    def create_collection(
        self, name: str, *, model: str, digest: str, dim: int, max_tokens: int, chunk_tokens: int, overlap: int
    ) -> CollectionRow:
        """Create it, or return the existing row when another writer created it meanwhile."""

    def list_collections(self) -> list[tuple[CollectionRow, int, int]]:
        """Every collection by name, with its document and chunk counts."""

    def drop_collection(self, name: str) -> bool:
        """Delete a collection and everything in it; ``False`` if there was none."""

    def counts(self, cid: int) -> tuple[int, int]:
        """``(documents, chunks)``."""

    def version(self, cid: int) -> int | None: ...

    # documents
    def hashes(self, cid: int, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """``id -> (content_hash, metadata JSON)`` for the given ids that exist."""

    def write(
        self,
        cid: int,
        upserts: Sequence[DocumentWrite] = (),
        metadata_only: Sequence[tuple[str, str]] = (),
        deletes: Sequence[str] = (),
    ) -> None:
        """One transaction: delete ids, set ``(id, metadata JSON)`` of unchanged documents, insert or
        replace documents with their chunks; bump the version. Raises
        :class:`~embedserve.errors.CollectionNotFound` if the collection was dropped meanwhile."""

    def get_documents(self, cid: int, ids: Sequence[str]) -> list[tuple[str, str, str]]:
        """``(id, text, metadata JSON)`` of the ids that exist, in the order given."""

    def ids_where(self, cid: int, where: Mapping[str, Any]) -> list[str]:
        """Ids of the documents whose metadata matches a ``where`` filter (see ``filters.py``)."""

    # reads for search
    def read(self, cid: int) -> AbstractContextManager[ReadView]: ...

    def native_search(
        self, cid: int, vectors: np.ndarray, top_k: int, where: Mapping[str, Any] | None, strategy: str
    ) -> list[list[StoreHit]] | None:
        """The backend's own vector search, or ``None`` to let the index search in process."""


def batched(ids: Sequence[str], size: int = 500) -> Iterator[list[str]]:
    """``ids`` in lists of at most ``size`` (SQL parameter limits)."""
    for i in range(0, len(ids), size):
        yield list(ids[i : i + size])
