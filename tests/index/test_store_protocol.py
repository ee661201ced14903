"""The collection store protocol (index/store.py), one suite for every backend.

A backend joins by adding a case to ``BACKENDS``: a function of the test's request and temp dir
that returns an open :class:`~embedserve.index.store.CollectionStore` (PostgreSQL: a fresh database
on the tests' own server, ``tests/pgkit.py``; skipped locally without it, failing under CI).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from embedserve.errors import CollectionNotFound
from embedserve.index.state import Snapshot
from embedserve.index.store import ChunkData, CollectionStore, DocumentWrite, Passage


def _sqlite(request: pytest.FixtureRequest, tmp: Path) -> CollectionStore:
    from embedserve.index.sqlite_store import SQLiteStore

    return SQLiteStore(tmp / "collections")


def _postgres(request: pytest.FixtureRequest, tmp: Path) -> CollectionStore:
    from embedserve.index.postgres_store import PostgresStore

    return PostgresStore(request.getfixturevalue("pg_url"))


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], CollectionStore]] = {
    "sqlite": _sqlite, "postgres": _postgres,
}
DIM = 8


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CollectionStore]:
    s = BACKENDS[request.param](request, tmp_path)
    yield s
    s.close()


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _doc(doc_id: str, n_chunks: int, seed: int, meta: dict | None = None, text: str | None = None) -> DocumentWrite:
    text = text or f"text of {doc_id} " * n_chunks
    step = max(1, len(text) // n_chunks)
    chunks = [ChunkData(i, i * step, min(len(text), (i + 1) * step), _vec(seed * 100 + i)) for i in range(n_chunks)]
    return DocumentWrite(doc_id, f"hash-{doc_id}-{seed}", text, json.dumps(meta or {}, sort_keys=True), chunks)


def _create(store: CollectionStore, name: str = "c") -> int:
    row = store.create_collection(name, model="m:latest", digest="d" * 64, dim=DIM, max_tokens=16,
                                  chunk_tokens=14, overlap=4)
    return row.id


def _refresh(store: CollectionStore, cid: int, snap: Snapshot) -> None:
    with store.read(cid) as view:
        v = view.version()
        assert v is not None
        if snap.version != v:
            snap.apply(view.delta(snap.version, snap.last_key, DIM))


def _ids(store: CollectionStore, cid: int, keys: list[int]) -> list[str]:
    """Document ids of document keys (the snapshot holds keys; hits read their documents)."""
    with store.read(cid) as view:
        got = view.passages([(k, 0, 0) for k in keys])
    assert all(p is not None for p in got)
    return [p.id for p in got if p is not None]


def _live(store: CollectionStore, cid: int, snap: Snapshot) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    rows = np.flatnonzero(snap.alive)
    for row, doc_id in zip(rows, _ids(store, cid, [int(snap.chunk_doc[r]) for r in rows])):
        out.setdefault(doc_id, []).append(int(snap.chunk_index[row]))
    return {k: sorted(v) for k, v in out.items()}


def test_collections_lifecycle(store: CollectionStore) -> None:
    assert store.get_collection("c") is None
    cid = _create(store)
    again = _create(store)  # created meanwhile by another writer: the same row
    assert again == cid
    row = store.get_collection("c")
    assert row is not None and (row.dim, row.model, row.chunk_tokens, row.overlap) == (DIM, "m:latest", 14, 4)
    assert store.version(cid) == 0 and store.counts(cid) == (0, 0)
    _create(store, "b")
    assert [r.name for r, _, _ in store.list_collections()] == ["b", "c"]
    assert store.drop_collection("c") and not store.drop_collection("c")
    assert store.get_collection("c") is None and store.version(cid) is None
    with pytest.raises(CollectionNotFound):
        store.write(cid, [_doc("a", 1, 1)])


def test_write_get_hashes_and_filters(store: CollectionStore) -> None:
    cid = _create(store)
    store.write(cid, [_doc("a", 2, 1, {"year": 2020}), _doc("b", 1, 2, {"year": 2024, "tag": "x"})])
    assert store.version(cid) == 1 and store.counts(cid) == (2, 3)
    assert store.hashes(cid, ["a", "zz"]) == {"a": ("hash-a-1", '{"year": 2020}')}
    got = store.get_documents(cid, ["b", "missing", "a"])
    assert [g[0] for g in got] == ["b", "a"] and json.loads(got[0][2]) == {"tag": "x", "year": 2024}
    assert store.ids_where(cid, {"year": {"$gte": 2021}}) == ["b"]
    assert sorted(store.ids_where(cid, {"$or": [{"tag": "x"}, {"year": 2020}]})) == ["a", "b"]
    store.write(cid, metadata_only=[("a", '{"year": 1999}')])
    assert store.hashes(cid, ["a"])["a"][1] == '{"year": 1999}'
    store.write(cid, deletes=["b"])
    assert store.counts(cid) == (1, 2) and store.version(cid) == 3
    ids = [f"d{i}" for i in range(1200)]  # more than one parameter batch
    store.write(cid, [_doc(i, 1, 10 + n) for n, i in enumerate(ids)])
    assert len(store.hashes(cid, ids)) == 1200 and len(store.get_documents(cid, ids)) == 1200


def test_reader_follows_every_kind_of_write(store: CollectionStore) -> None:
    cid = _create(store)
    snap = Snapshot(cid, DIM)
    store.write(cid, [_doc("a", 2, 1, {"k": 1}), _doc("b", 3, 2)])
    _refresh(store, cid, snap)
    assert _live(store, cid, snap) == {"a": [0, 1], "b": [0, 1, 2]}
    first_keys = snap.chunk_keys.copy()
    store.write(cid, [_doc("b", 1, 3)])  # replaced: old chunks gone, one new one
    store.write(cid, metadata_only=[("a", '{"k": 2}')])
    store.write(cid, [_doc("c", 1, 4)], deletes=["a"])
    _refresh(store, cid, snap)
    assert _live(store, cid, snap) == {"b": [0], "c": [0]}
    assert snap.version == store.version(cid)
    live_keys = snap.chunk_keys[snap.alive]
    assert live_keys.min() > first_keys.max()  # chunk keys are never reused
    live_rows = np.flatnonzero(snap.alive)
    row = int(live_rows[_ids(store, cid, [int(snap.chunk_doc[r]) for r in live_rows]).index("b")])
    np.testing.assert_allclose(snap.vectors[row], _vec(300), rtol=1e-6)
    store.write(cid, [_doc("a", 1, 5, {"k": 3})])  # an id deleted and added again
    _refresh(store, cid, snap)
    live_rows = np.flatnonzero(snap.alive)
    live_keys = [int(snap.chunk_doc[r]) for r in live_rows]
    a = [k for k, d in zip(live_keys, _ids(store, cid, live_keys)) if d == "a"]
    with store.read(cid) as view:
        assert len(a) == 1 and view.metadata()[a[0]] == {"k": 3}
        assert sorted(map(str, view.metadata().values())) == ["{'k': 3}", "{}", "{}"]
    snap.meta = {}  # metadata loaded (a filtered query): later deltas keep it up to date
    store.write(cid, metadata_only=[("a", '{"k": 4}')])
    _refresh(store, cid, snap)
    assert snap.meta == {a[0]: {"k": 4}}
    # a fresh reader sees the same state as the one that followed the changes
    fresh = Snapshot(cid, DIM)
    _refresh(store, cid, fresh)
    assert _live(store, cid, fresh) == _live(store, cid, snap) == {"a": [0], "b": [0], "c": [0]}


def test_passages_come_from_one_snapshot(store: CollectionStore) -> None:
    cid = _create(store)
    store.write(cid, [_doc("a", 1, 1, text="hello brave new world")])
    with store.read(cid) as view:
        key = int(view.delta(None, 0, DIM).chunk_docs[0])
        assert view.passages([(key, 6, 11), (key + 999, 0, 3)]) == [
            Passage("a", "brave", {}, "hash-a-1"), None,
        ]


def test_native_search_is_optional(store: CollectionStore) -> None:
    cid = _create(store)
    store.write(cid, [_doc("a", 1, 1)])
    res = store.native_search(cid, _vec(100)[None, :], 1, None, "auto")
    if res is not None:  # a backend that searches itself must find the one chunk
        assert res[0][0].id == "a" and res[0][0].score == pytest.approx(1.0, abs=1e-3)
