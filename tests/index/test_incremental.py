"""Writes cost O(new chunks): segments, tombstones, incremental readers, compaction, ANN reuse."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedserve.config import Settings
from embedserve.index import compaction
from embedserve.index.collection import Collection
from embedserve.index.search import SearchConfig
from embedserve.index.sqlite_store import _m001_initial
from embedserve.index.state import Snapshot

from .conftest import CountingEncoder, make_encoder

WORDS = " ".join(f"w{j}" for j in range(30))  # 3 chunks at max_tokens=16


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    seen: list[Any] = []
    real = Snapshot.apply

    def apply(self: Snapshot, delta: Any) -> Any:
        seen.append(delta)
        return real(self, delta)

    monkeypatch.setattr(Snapshot, "apply", apply)
    return seen


def _db(settings: Settings) -> sqlite3.Connection:
    return sqlite3.connect(settings.collections_dir / "collections.db")


def test_a_write_reaches_readers_as_a_delta_of_its_own_chunks(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    enc = make_encoder(max_tokens=16)
    writer = Collection.open("c", settings=settings, encoder=enc)
    reader = Collection.open("c", settings=settings, encoder=make_encoder(max_tokens=16))  # another connection
    writer.add([{"id": str(i), "text": f"doc {i} {WORDS}"} for i in range(200)])
    deltas = _spy(monkeypatch)
    reader.query("w1", top_k=3)
    assert len(deltas) == 1 and deltas[0].full and len(deltas[0].chunk_keys) == 600
    writer.add([{"id": "new", "text": "brand new " + WORDS}])
    writer.add([{"id": "5", "text": "replaced five " + WORDS + " " + WORDS}])
    writer.delete(ids=["7"])
    writer.add([{"id": "9", "text": f"doc 9 {WORDS}", "metadata": {"tag": "x"}}])  # metadata only
    hits = reader.query("brand new", top_k=300)
    d = deltas[1]
    assert not d.full and len(deltas) == 2
    assert len(d.chunk_keys) == 3 + 6  # the new document's and the replacement's chunks
    assert len(d.removed) == 3 + 3  # the replaced and the deleted document's old chunks
    assert sorted(x.id for x in d.documents) == ["5", "9", "new"]
    assert hits[0].id == "new" and len(hits) == 200 and "7" not in {h.id for h in hits}
    assert reader.query("w1", top_k=1, where={"tag": "x"})[0].id == "9"
    snap = reader._snap
    assert snap is not None and snap.live == 600 - 6 + 9 and snap.dead == 6


def test_vectors_live_in_segment_files_not_in_the_database(settings: Settings, encoder: CountingEncoder) -> None:
    col = Collection.open("c", settings=settings, encoder=encoder)
    col.add([{"id": str(i), "text": f"text number {i}"} for i in range(50)])
    db = _db(settings)
    assert db.execute("SELECT count(*) FROM chunks WHERE length(embedding) > 0").fetchone()[0] == 0
    (cid,) = db.execute("SELECT id FROM collections").fetchone()
    segs = db.execute("SELECT seg, rows, dead FROM segments").fetchall()
    assert segs == [(1, 50, 0)]
    f = settings.collections_dir / f"vec-{cid}" / "000001.f32"
    assert f.stat().st_size == 50 * 32 * 4
    col.add([{"id": "3", "text": "changed"}])
    assert db.execute("SELECT rows, dead FROM segments").fetchone() == (51, 1)
    Collection.drop("c", settings)
    assert not f.parent.exists()


def test_compaction_rewrites_dead_segments_in_the_background(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compaction, "MIN_DEAD", 10)
    monkeypatch.setattr("embedserve.index.sqlite_store.SEGMENT_ROWS", 40)
    enc = make_encoder()
    col = Collection.open("c", settings=settings, encoder=enc)
    other = Collection.open("c", settings=settings, encoder=make_encoder())
    col.add([{"id": str(i), "text": f"first {i}"} for i in range(100)], batch_size=20)
    other.query("first 1", top_k=5)  # a reader that follows across the compaction
    started: list[Any] = []
    real = compaction.maybe_compact_in_background

    def spy(store: Any, cid: int) -> Any:
        t = real(store, cid)
        if t is not None:
            started.append(t)
        return t

    monkeypatch.setattr(compaction, "maybe_compact_in_background", spy)
    col.add([{"id": str(i), "text": f"second {i}"} for i in range(60)], batch_size=20)
    assert started, "no compaction started"
    for t in started:
        t.join(30)
    db = _db(settings)
    rows, dead = db.execute("SELECT sum(rows), sum(dead) FROM segments").fetchone()
    assert rows - dead == 100 and dead < 40
    # every chunk points inside a committed segment, and the vectors there are the right ones
    folder = next(settings.collections_dir.glob("vec-*"))
    assert list(folder.glob("*.retired"))
    fresh = Collection.open("c", settings=settings, encoder=make_encoder())
    for c in (fresh, other):
        hits = c.query("second 42", top_k=3)
        assert hits[0].id == "42" and hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert c.query("first 77", top_k=1)[0].id == "77"
    assert other._snap is not None and not other._snap.rows - other._snap.dead - 100


def test_readers_far_behind_reload_in_full(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compaction, "KEEP_TOMBSTONES", 2)
    enc = make_encoder()
    col = Collection.open("c", settings=settings, encoder=enc)
    reader = Collection.open("c", settings=settings, encoder=make_encoder())
    col.add([{"id": str(i), "text": f"t {i}"} for i in range(10)])
    reader.query("t 1")
    for i in range(5):
        col.add([{"id": str(i), "text": f"changed {i}"}])
    from embedserve.index.sqlite_store import SQLiteStore

    own = SQLiteStore(settings.collections_dir)
    r = compaction.compact(own, col._row.id)
    own.close()
    assert r.tombstones > 0
    deltas = _spy(monkeypatch)
    hits = reader.query("changed 0", top_k=10)
    assert deltas[0].full and hits[0].id == "0" and len(hits) == 10


def test_old_databases_keep_working_after_the_migration(settings: Settings, encoder: CountingEncoder) -> None:
    """A database from before segments (vectors as blobs) opens, searches, and takes new writes."""
    settings.collections_dir.mkdir(parents=True)
    db = sqlite3.connect(settings.collections_dir / "collections.db", isolation_level=None)
    db.execute("BEGIN")
    _m001_initial(db)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    db.execute("INSERT INTO _migrations VALUES ('m001_initial', 0)")
    info = encoder.info
    db.execute(
        "INSERT INTO collections (name, model, digest, dim, max_tokens, chunk_tokens, overlap, version, created_at,"
        " updated_at) VALUES ('old', ?, ?, ?, ?, ?, 16, 3, 0, 0)",
        (info.name, info.digest, info.dim, info.max_tokens, info.max_tokens - 2),
    )
    vecs = encoder.encode(["old one", "old two"])
    for i, (text, v) in enumerate(zip(["old one", "old two"], vecs)):
        db.execute("INSERT INTO documents (collection_id, id, content_hash, text, metadata, updated_at)"
                   " VALUES (1, ?, ?, ?, '{}', 0)", (f"o{i}", f"h{i}", text))
        db.execute("INSERT INTO chunks (collection_id, doc_rowid, idx, start_char, end_char, embedding)"
                   " VALUES (1, ?, 0, 0, ?, ?)", (i + 1, len(text), np.asarray(v, np.float32).tobytes()))
    db.execute("COMMIT")
    db.close()
    col = Collection.open("old", settings=settings, encoder=encoder)
    assert col.query("old two", top_k=1)[0].id == "o1"
    col.add([{"id": "n", "text": "new one"}])
    col.delete(ids=["o0"])
    assert [h.id for h in col.query("new one", top_k=5)] == ["n", "o1"]
    fresh = Collection.open("old", settings=settings, encoder=make_encoder())
    assert [h.id for h in fresh.query("old two", top_k=5)] == ["o1", "n"]


def need_usearch() -> None:
    from embedserve.index.ann import available

    if not available():
        pytest.skip("usearch is not installed (the 'ann' extra)")


def test_ann_index_is_updated_in_place_and_reused_after_a_restart(settings: Settings) -> None:
    need_usearch()
    cfg = SearchConfig(strategy="ann")
    col = Collection.open("c", settings=settings, encoder=make_encoder(), search=cfg)
    col.add([{"id": str(i), "text": f"some text {i}"} for i in range(300)])
    col.query("some text 1")
    ann = col._ann
    assert ann is not None and not ann.loaded and ann.last_sync == (300, 0)
    col.add([{"id": "x", "text": "an extra one"}])
    col.add([{"id": "5", "text": "five changed"}])
    assert col.query("an extra one", top_k=1)[0].id == "x"
    assert col._ann is ann and ann.last_sync == (2, 1)  # incremental: never rebuilt
    col.close()  # saves
    again = Collection.open("c", settings=settings, encoder=make_encoder(), search=cfg)
    again.add([{"id": "y", "text": "after the restart"}])
    assert again.query("after the restart", top_k=1)[0].id == "y"
    assert again._ann is not None and again._ann.loaded and again._ann.last_sync == (1, 0)
    assert again.query("five changed", top_k=1)[0].id == "5"


def test_ann_file_from_another_database_is_not_trusted(settings: Settings, tmp_path: Path) -> None:
    need_usearch()
    cfg = SearchConfig(strategy="ann")
    col = Collection.open("c", settings=settings, encoder=make_encoder(), search=cfg)
    col.add([{"id": str(i), "text": f"alpha {i}"} for i in range(50)])
    col.query("alpha 1")
    col.close()
    (ann_file,) = settings.collections_dir.glob("ann-*.usearch")
    saved = ann_file.read_bytes()
    Collection.drop("c", settings)
    (settings.collections_dir / "collections.db").unlink()  # a new database reuses ids and keys
    col = Collection.open("c", settings=settings, encoder=make_encoder(), search=cfg)
    col.add([{"id": str(i), "text": f"beta {i}"} for i in range(50)])
    ann_file.write_bytes(saved)
    fresh = Collection.open("c", settings=settings, encoder=make_encoder(), search=cfg)
    assert fresh.query("beta 7", top_k=1)[0].id == "7"
    assert fresh._ann is not None and fresh._ann.last_sync[0] == 50  # rebuilt
