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
