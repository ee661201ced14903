"""A SIGKILL in the middle of an add loses nothing that was committed; readers see whole states."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from embedserve.config import Settings
from embedserve.index.collection import Collection

from .conftest import make_encoder

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from embedserve.config import Settings
    from embedserve.engine.fake import FakeEngine
    from embedserve.index.collection import Collection
    from embedserve.embedder import Embedder

    enc = Embedder.from_engine(FakeEngine(max_tokens=16, delay_per_batch=0.002))
    col = Collection.open("kill", settings=Settings(home=Path(sys.argv[1])), encoder=enc)
    words = " ".join(f"w{j}" for j in range(60))
    b = 0
    while True:
        docs = [{"id": f"{b}-{i}", "text": f"doc {b} {i} " + words} for i in range(8)]
        col.add(docs, batch_size=8)
        print(f"committed {b}", flush=True)
        b += 1
    """
)


@pytest.mark.slow
def test_sigkill_during_add_loses_no_committed_document(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    committed: list[int] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while len(committed) < 15 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            committed.append(int(line.split()[1]))
        time.sleep(0.003)  # land inside a later add (embedding or committing)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    assert len(committed) >= 15, err[-2000:]
    db = sqlite3.connect(home / "collections" / "collections.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    col = Collection.open("kill", settings=Settings(home=home), encoder=make_encoder(max_tokens=16))
    ids = {f"{b}-{i}" for b in committed for i in range(8)}
    got = {d.id for d in col.get(sorted(ids))}
    assert got == ids
    snap_hits = col.query("doc w1", top_k=5)
    assert len(snap_hits) == 5
    # every document present has all its chunks (a batch is committed whole or not at all)
    info = col.info()
    assert info.documents % 8 == 0 and info.chunks == info.documents * 6


def test_queries_during_adds_see_whole_states(settings: Settings) -> None:
    enc = make_encoder(max_tokens=16)
    writer = Collection.open("c", settings=settings, encoder=enc)
    reader = Collection.open("c", settings=settings, encoder=make_encoder(max_tokens=16))
    words = " ".join(f"w{j}" for j in range(30))  # 3 chunks per document
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for b in range(40):
                writer.add([{"id": f"{b}-{i}", "text": f"{b} {i} {words}"} for i in range(5)], batch_size=5)
                if b % 3 == 0:
                    writer.add([{"id": f"{b}-0", "text": f"changed {b} {words} {words}"}])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            stop.set()

    t = threading.Thread(target=write)
    t.start()
    checks = 0
    while not stop.is_set() or checks == 0:
        reader.query("w3 w4", top_k=3)
        snap = reader._snap
        assert snap is not None
        per_doc: dict[int, list[int]] = {}
        live = snap.alive
        for d, i in zip(snap.chunk_doc[live].tolist(), snap.chunk_index[live].tolist()):
            per_doc.setdefault(d, []).append(i)
        assert len(per_doc) % 5 == 0
        for idxs in per_doc.values():
            assert sorted(idxs) == list(range(len(idxs))) and len(idxs) in (3, 6)
        checks += 1
    t.join()
    assert not errors
    assert reader.count() == 200 and checks > 1


CHURN = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from embedserve.config import Settings
    from embedserve.engine.fake import FakeEngine
    from embedserve.index import ann, compaction, sqlite_store
    from embedserve.index.collection import Collection
    from embedserve.index.search import SearchConfig
    from embedserve.embedder import Embedder

    ann.SAVE_EVERY_S, ann.SAVE_MIN_CHANGES = 0.0, 1  # save the HNSW file after every change
    compaction.MIN_DEAD, compaction.DEAD_FRACTION = 8, 0.05  # compact often
    compaction.SEGMENT_DEAD_FRACTION = 0.1
    sqlite_store.SEGMENT_ROWS = 64                   # and roll segments often
    enc = Embedder.from_engine(FakeEngine(max_tokens=16))
    strategy = "ann" if ann.available() else "exact"
    col = Collection.open("churn", settings=Settings(home=Path(sys.argv[1])), encoder=enc,
                          search=SearchConfig(strategy=strategy))
    words = " ".join(f"w{j}" for j in range(30))
    b = int(sys.argv[2])
    while True:
        col.add([{"id": f"{b}-{i}", "text": f"doc {b} {i} " + words} for i in range(4)], batch_size=4)
        if b % 2:
            col.add([{"id": f"{b - 1}-0", "text": f"changed {b} " + words}])
        if b % 3 == 0 and b:
            col.delete(ids=[f"{b - 3}-1"])
        col.query("w1 w2", top_k=3)
        print(f"committed {b}", flush=True)
        b += 1
    """
)


def _churn_steps(b: int) -> list:  # type: ignore[type-arg]
    """The writes (commits) batch ``b`` of CHURN makes, in order, as functions on id -> text."""
    words = " ".join(f"w{j}" for j in range(30))
    steps = [lambda st: st.update({f"{b}-{i}": f"doc {b} {i} " + words for i in range(4)})]
    if b % 2:
        steps.append(lambda st: st.update({f"{b - 1}-0": f"changed {b} " + words}))
    if b % 3 == 0 and b:
        steps.append(lambda st: st.pop(f"{b - 3}-1", None))
    return steps


@pytest.mark.slow
def test_sigkill_during_churn_leaves_segments_and_ann_consistent(tmp_path: Path) -> None:
    """Adds, replacements, deletes, segment rolls, compactions and HNSW saves, killed at random moments
    three times over: every committed write survives and the store opens cleanly each time."""
    import random

    import numpy as np

    from embedserve.index.ann import available

    home = tmp_path / "home"
    rng = random.Random(7)
    expected: dict[str, str] = {}
    start = 0
    for _round in range(3):
        proc = subprocess.Popen([sys.executable, "-c", CHURN, str(home), str(start)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        last = start - 1
        try:
            assert proc.stdout is not None
            target = start + rng.randint(8, 14)
            deadline = time.monotonic() + 90
            while last < target and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                last = int(line.split()[1])
            time.sleep(rng.uniform(0, 0.05))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            rest, err = proc.communicate(timeout=30)
        for line in rest.splitlines():  # printed before the kill, read after it
            last = int(line.split()[1])
        assert last >= start + 8, err[-2000:]
        for b in range(start, last + 1):  # what the child had committed when it printed
            for step in _churn_steps(b):
                step(expected)
        # the child may have committed some of the next batch's writes before the kill
        states = [dict(expected)]
        for step in _churn_steps(last + 1):
            nxt = dict(states[-1])
            step(nxt)
            states.append(nxt)
        ids = sorted(set().union(*states))
        start = last + 10  # the next child starts on fresh ids (the killed one may have written more)

        db = sqlite3.connect(home / "collections" / "collections.db")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        (cid, dim) = db.execute("SELECT id, dim FROM collections").fetchone()
        committed = dict(db.execute("SELECT seg, rows FROM segments WHERE collection_id = ?", (cid,)))
        for seg, off in db.execute("SELECT seg, off FROM chunks"):
            assert seg in committed and 0 <= off < committed[seg]
        folder = home / "collections" / f"vec-{cid}"
        for seg, rows in committed.items():
            assert (folder / f"{seg:06d}.f32").stat().st_size >= rows * dim * 4
            assert (folder / f"{seg:06d}.rows").stat().st_size >= rows * 5 * 8  # the row sidecar
        db.close()

        col = Collection.open("churn", settings=Settings(home=home), encoder=make_encoder(max_tokens=16))
        got = {d.id: d.text for d in col.get(ids)}
        assert got in states
        expected = got
        assert len(col.query("w1 w2", top_k=3, strategy="exact")) == 3
        snap = col._snap
        assert snap is not None
        with col._store.read(col._row.id) as view:  # every sidecar agrees with the database
            view.delta(None, 0, dim)
            assert view.stale == []  # type: ignore[attr-defined]
        rows = np.flatnonzero(snap.alive)
        fresh = make_encoder(max_tokens=16)
        with col._store.read(col._row.id) as view:
            ids = [p.id for p in view.passages([(int(snap.chunk_doc[r]), 0, 0) for r in rows])]
        texts = [expected[i][snap.chunk_start[r]:snap.chunk_end[r]] for i, r in zip(ids, rows)]
        want = fresh.encode(texts, normalize=True)  # the vectors on disk are the committed ones
        np.testing.assert_allclose(snap.vectors[rows], want, atol=1e-5)
        if available():
            assert col.query("w1 w2", top_k=3, strategy="ann")
            assert col._ann is not None and len(col._ann) == len(rows)
        col.close()
    assert list(folder.glob("*.retired")), "no compaction happened: the test did not test it"
