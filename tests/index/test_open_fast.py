"""Opening a collection reads segment row sidecars, not SQL rows; rescoring windows grow with size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedserve.config import Settings
from embedserve.index import compaction
from embedserve.index import search as _search
from embedserve.index.collection import Collection
from embedserve.index.search import SearchConfig
from embedserve.index.segments import SegmentFiles
from embedserve.index.sqlite_reads import SQLiteReadView
from embedserve.index.store import Delta

from .conftest import make_encoder

WORDS = " ".join(f"w{j}" for j in range(30))  # 3 chunks at max_tokens=16


def _churned(settings: Settings) -> Collection:
    """Adds, replacements, deletes and a compaction: segments with dead rows and one whose keys
    are older than the segment before it."""
    col = Collection.open("c", settings=settings, encoder=make_encoder(max_tokens=16))
    col.add([{"id": str(i), "text": f"doc {i} {WORDS}", "metadata": {"n": i}} for i in range(40)])
    col.add([{"id": str(i), "text": f"changed {i} {WORDS}"} for i in range(0, 40, 2)])  # replaced
    col.delete(ids=[str(i) for i in range(1, 20, 4)])
    old = (compaction.MIN_DEAD, compaction.DEAD_FRACTION, compaction.SEGMENT_DEAD_FRACTION)
    compaction.MIN_DEAD, compaction.DEAD_FRACTION, compaction.SEGMENT_DEAD_FRACTION = 1, 0.01, 0.01
    try:
        assert compaction.compact(col._store, col._row.id).moved > 0  # type: ignore[arg-type]
    finally:
        compaction.MIN_DEAD, compaction.DEAD_FRACTION, compaction.SEGMENT_DEAD_FRACTION = old
    col.add([{"id": "late", "text": f"after the compaction {WORDS}"}])  # appended to the compacted segment
    col.delete(ids=["7"])  # a dead row in a segment that is not compacted
    return col


def _full(col: Collection) -> tuple[Delta, int]:
    with col._store.read(col._row.id) as view:
        assert isinstance(view, SQLiteReadView)
        d = view.delta(None, 0, col._row.dim)
        return d, len(view.stale)


def _live(d: Delta) -> dict[int, tuple[int, int, int, int, bytes]]:
    dead = set(d.removed.tolist())
    return {
        int(k): (int(doc), int(i), int(s), int(e), np.asarray(v, np.float32).tobytes())
        for k, doc, i, s, e, v in zip(d.chunk_keys, d.chunk_docs, d.chunk_index, d.chunk_start, d.chunk_end, d.vectors)
        if int(k) not in dead
    }


def _from_sql(col: Collection) -> dict[int, tuple[int, int, int, int, bytes]]:
    """The live chunks as SQL says (rows and their (seg, off) vectors), the reference."""
    with col._store.read(col._row.id) as view:
        assert isinstance(view, SQLiteReadView)
        meta, vecs = view._chunks_from_sql("collection_id = ?", (col._row.id,), col._row.dim)
    return {int(m[0]): (int(m[1]), int(m[2]), int(m[3]), int(m[4]), v.tobytes()) for m, v in zip(meta, vecs)}


def test_a_fresh_reader_loads_everything_from_the_sidecars(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    col = _churned(settings)
    reference = _from_sql(col)
    calls: list[str] = []
    real = SQLiteReadView._chunks_from_sql

    def spy(self: SQLiteReadView, where: str, args: Any, dim: int) -> Any:
        calls.append(where)
        return real(self, where, args, dim)

    monkeypatch.setattr(SQLiteReadView, "_chunks_from_sql", spy)
    d, fallbacks = _full(col)
    assert fallbacks == 0 and calls == ["collection_id = ? AND seg IS NULL"]  # no chunk row read, only the pre-segment ones
    assert d.full and d.documents == [] and np.all(np.diff(d.chunk_keys) > 0)
    assert len(d.removed) > 0  # dead rows come as removed keys of the full delta
    assert _live(d) == reference
    fresh = Collection.open("c", settings=settings, encoder=make_encoder(max_tokens=16))
    hit = fresh.query("after the compaction", top_k=1, strategy="exact")[0]
    assert hit.id == "late" and hit.text.startswith("after the compaction")
    got = fresh.query("doc 11", top_k=40, where={"n": {"$gte": 30}}, strategy="exact")
    assert sorted(int(h.id) for h in got) == list(range(31, 40, 2))  # odd ids >= 30: still carry "n"
    snap = fresh._snap
    assert snap is not None and snap.live == len(reference)


@pytest.mark.parametrize("damage", ["missing", "short", "wrong document"])
def test_a_stale_sidecar_is_read_from_sql_and_rebuilt_by_the_next_write(settings: Settings, damage: str) -> None:
    col = Collection.open("c", settings=settings, encoder=make_encoder(max_tokens=16))
    col.add([{"id": str(i), "text": f"doc {i} {WORDS}"} for i in range(10)])
    col.delete(ids=["3"])
    files = SegmentFiles(settings.collections_dir, col._row.id, col._row.dim)
    (path,) = files.folder.glob("*.rows")
    if damage == "missing":
        path.unlink()
    elif damage == "short":
        path.write_bytes(path.read_bytes()[:-40])
    else:
        rows = np.fromfile(path, dtype=np.int64).reshape(-1, 5)
        rows[0, 1] += 1000  # the first live row names another document
        rows.tofile(path)
    reference = _from_sql(col)
    d, fallbacks = _full(col)
    assert fallbacks == 1 and _live(d) == reference  # read from SQL, then the sidecar rebuilt
    d, fallbacks = _full(col)
    assert fallbacks == 0 and _live(d) == reference
    fresh = Collection.open("c", settings=settings, encoder=make_encoder(max_tokens=16))
    assert fresh.query("doc 0", top_k=1, strategy="exact")[0].id == "0"


def test_a_write_to_a_segment_from_before_sidecars_rebuilds_its_sidecar(settings: Settings) -> None:
    col = Collection.open("c", settings=settings, encoder=make_encoder(max_tokens=16))
    col.add([{"id": str(i), "text": f"doc {i} {WORDS}"} for i in range(10)])
    col.delete(ids=["3"])
    (path,) = SegmentFiles(settings.collections_dir, col._row.id, col._row.dim).folder.glob("*.rows")
    path.unlink()  # as an older embedserve left it
    col.add([{"id": "new", "text": "a new one"}])  # appends to that segment: rebuilds its sidecar first
    d, fallbacks = _full(col)
    assert fallbacks == 0 and _live(d) == _from_sql(col)


def test_sidecars_follow_compaction_and_drop(settings: Settings) -> None:
    col = _churned(settings)
    folder = SegmentFiles(settings.collections_dir, col._row.id, col._row.dim).folder
    assert sorted(p.suffix for p in folder.glob("*.retired")) == [".retired", ".retired"]  # .f32 and .rows
    assert {p.stem for p in folder.glob("*.rows")} == {p.stem for p in folder.glob("*.f32")}
    col.close()
    Collection.drop("c", settings)
    assert not folder.exists()


def test_binary_rescoring_window_grows_with_the_collection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = SearchConfig(rescore_min=20, rescore_multiplier=2, rescore_fraction=0.05)
    assert _search.rescore_window(cfg, 10, 100) == 20
    assert _search.rescore_window(cfg, 10, 10_000) == 500
    seen: list[int] = []
    real = _search._rescore

    def spy(snap: Any, q: np.ndarray, cand: np.ndarray, top_k: int) -> Any:
        seen.append(len(cand))
        return real(snap, q, cand, top_k)

    monkeypatch.setattr(_search, "_rescore", spy)
    col = Collection.open("w", settings=Settings(home=tmp_path / "h"), encoder=make_encoder(), search=cfg)
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((2000, 32)).astype(np.float32)
    col.add([{"id": str(i), "text": f"t{i}", "embedding": v} for i, v in enumerate(vecs)], batch_size=1000)
    for strategy in ("binary", "int8"):
        col.search_vectors(vecs[:1] / np.linalg.norm(vecs[0]), 5, strategy=strategy)  # type: ignore[arg-type]
    col.search_vectors(vecs[:1] / np.linalg.norm(vecs[0]), 5, where={"x": 1}, strategy="binary")
    assert seen == [100, 100, 0]  # 5 % of 2,000 live rows, then of the 0 rows the filter allows


def test_hnsw_adds_in_one_batch_on_the_cpu_quota(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from embedserve.index import ann

    if not ann.available():
        pytest.skip("usearch is not installed (the 'ann' extra)")
    monkeypatch.setattr(ann, "cpu_quota", lambda: 3)
    col = Collection.open("h", settings=Settings(home=tmp_path / "h"), encoder=make_encoder(),
                          search=SearchConfig(strategy="ann"))
    col.add([{"id": str(i), "text": f"some text {i}"} for i in range(200)])
    calls: list[tuple[int, Any]] = []

    class Spy:
        def __init__(self, index: Any) -> None:
            self._index = index

        def add(self, keys: np.ndarray, vectors: np.ndarray, threads: Any = None) -> Any:
            calls.append((len(keys), threads))
            return self._index.add(keys, vectors, threads=threads)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._index, name)

        def __len__(self) -> int:
            return len(self._index)

    real_make = ann.AnnIndex.__init__

    def init(self: Any, *a: Any, **kw: Any) -> None:
        real_make(self, *a, **kw)
        self.index = Spy(self.index)

    monkeypatch.setattr(ann.AnnIndex, "__init__", init)
    assert col.query("some text 3", top_k=1)[0].id == "3"
    assert calls == [(200, 3)]  # the build: one batch, the quota's threads (not 0: every host core)


def test_a_delta_walks_the_new_chunks_not_the_collection(settings: Settings) -> None:
    """The query a reader runs for chunks newer than its last key is a rowid range, not a scan of
    the collection's index (which made "add 1 + query" cost 100 ms at 1M chunks)."""
    col = Collection.open("c", settings=settings, encoder=make_encoder(max_tokens=16))
    col.add([{"id": "a", "text": "one"}])
    plans: list[str] = []
    with col._store.read(col._row.id) as view:
        assert isinstance(view, SQLiteReadView)
        view._db.set_trace_callback(None)
        real = view._db

        class Explain:
            def execute(self, sql: str, args: Any = ()) -> Any:
                if "FROM chunks" in sql and "rowid > ?" in sql:
                    plans.extend(str(r[3]) for r in real.execute("EXPLAIN QUERY PLAN " + sql, args))
                return real.execute(sql, args)

        view._db = Explain()  # type: ignore[assignment]
        view.delta(1, 1, col._row.dim)
    assert plans and all("INDEX" not in p for p in plans), plans
    assert any("PRIMARY KEY (rowid>?)" in p for p in plans), plans
