"""Background compaction of the SQLite store's vector segments and tombstones.

Deletes and updates leave dead rows in the append-only segment files. When a collection's dead
rows pass ``DEAD_FRACTION`` of its rows (and ``MIN_DEAD``), a daemon thread of the writing process
opens its own connection and, in one write transaction, copies the live rows of every segment at
least half dead into one new segment (with its row sidecar), points their chunks there, and drops the old segments' rows;
after the commit the old files are retired (deleted a grace period later, see ``segments.py``).
Chunk keys and vectors do not change, so readers' snapshots and ANN indexes stay valid. The same
pass forgets tombstones older than ``KEEP_TOMBSTONES`` versions (a reader further behind than that
reloads in full). A kill in the middle leaves an uncommitted file that the next writer truncates.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from embedserve.index.segments import SegmentFiles

log = logging.getLogger("embedserve.index")

DEAD_FRACTION = 0.25
MIN_DEAD = 4096
SEGMENT_DEAD_FRACTION = 0.5
KEEP_TOMBSTONES = 1000  # versions

_running: set[tuple[str, int]] = set()
_running_lock = threading.Lock()


@dataclass
class CompactResult:
    segments: int = 0  # segments rewritten
    moved: int = 0  # live rows copied
    freed: int = 0  # dead rows dropped
    tombstones: int = 0  # tombstones forgotten


def needs_compaction(store: object, cid: int) -> bool:
    from embedserve.index.sqlite_store import SQLiteStore

    assert isinstance(store, SQLiteStore)
    with store.transaction() as db:
        rows, dead = db.execute(
            "SELECT coalesce(sum(rows), 0), coalesce(sum(dead), 0) FROM segments WHERE collection_id = ?", (cid,)
        ).fetchone()
    return bool(dead >= MIN_DEAD and dead >= DEAD_FRACTION * rows)


def compact(store: object, cid: int) -> CompactResult:
    """Rewrite the mostly-dead segments of collection ``cid`` (call with a store of its own)."""
    from embedserve.index.sqlite_store import SQLiteStore

    assert isinstance(store, SQLiteStore)
    result = CompactResult()
    retire: list[int] = []
    with store.transaction(write=True) as db:
        row = db.execute("SELECT dim, version, next_seg FROM collections WHERE id = ?", (cid,)).fetchone()
        if row is None:
            return result
        dim, version, next_seg = (int(x) for x in row)
        files = SegmentFiles(store.directory, cid, dim)
        segs = db.execute("SELECT seg, rows, dead FROM segments WHERE collection_id = ? ORDER BY seg", (cid,)).fetchall()
        targets = [(s, r, d) for s, r, d in segs if r and d >= SEGMENT_DEAD_FRACTION * r]
        if targets:
            marks = ",".join("?" * len(targets))
            live = db.execute(
                "SELECT rowid, doc_rowid, idx, start_char, end_char, seg, off FROM chunks"
                f" WHERE collection_id = ? AND seg IN ({marks}) ORDER BY rowid",
                (cid, *[s for s, _, _ in targets]),
            ).fetchall()
            committed = {s: r for s, r, _ in targets}
            table = np.array(live, dtype=np.int64).reshape(len(live), 7)
            keys, seg_of, off_of = table[:, 0], table[:, 5], table[:, 6]
            vectors = np.empty((len(live), dim), dtype=np.float32)
            for s, rows in committed.items():
                at = np.flatnonzero(seg_of == s)
                vectors[at] = files.read(s, rows, off_of[at])
            if len(live):
                new = next_seg
                db.execute("UPDATE collections SET next_seg = ? WHERE id = ?", (new + 1, cid))
                files.append(new, 0, vectors, table[:, :5])
                db.execute("INSERT INTO segments (collection_id, seg, rows, dead) VALUES (?, ?, ?, 0)",
                           (cid, new, len(live)))
                db.executemany("UPDATE chunks SET seg = ?, off = ? WHERE rowid = ?",
                               [(new, i, int(k)) for i, k in enumerate(keys.tolist())])
            db.execute(f"DELETE FROM segments WHERE collection_id = ? AND seg IN ({marks})",
                       (cid, *[s for s, _, _ in targets]))
            retire = [s for s, _, _ in targets]
            result.segments, result.moved = len(targets), len(live)
            result.freed = sum(r for _, r, _ in targets) - len(live)
        floor = version - KEEP_TOMBSTONES
        if floor > 0:
            cur = db.execute("DELETE FROM tombstones WHERE collection_id = ? AND version <= ?", (cid, floor))
            result.tombstones = cur.rowcount
            db.execute("UPDATE collections SET tomb_floor = max(tomb_floor, ?) WHERE id = ?", (floor, cid))
    files = SegmentFiles(store.directory, cid, 0)
    for s in retire:
        files.retire(s)
    files.sweep()
    return result


def maybe_compact_in_background(store: object, cid: int) -> threading.Thread | None:
    """Start a compaction thread for ``cid`` when one is due and none is running for it."""
    from embedserve.index.sqlite_store import SQLiteStore

    assert isinstance(store, SQLiteStore)
    key = (str(store.path), cid)
    with _running_lock:
        if key in _running or not needs_compaction(store, cid):
            return None
        _running.add(key)

    def run() -> None:
        own = SQLiteStore(store.directory)
        own.compact_after_writes = False
        try:
            r = compact(own, cid)
            log.info("compacted collection %d: %d segments, %d rows moved, %d freed", cid, r.segments, r.moved,
                     r.freed)
        except Exception as exc:  # noqa: BLE001 - a failed compaction leaves the store as it was
            log.warning("compaction of collection %d failed: %s", cid, exc)
        finally:
            own.close()
            with _running_lock:
                _running.discard(key)

    t = threading.Thread(target=run, name=f"embedserve-compact-{cid}", daemon=True)
    t.start()
    return t
