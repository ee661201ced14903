"""Append-only vector segment files: where the SQLite store keeps chunk vectors.

Each collection has a folder ``vec-<collection id>/`` of raw float32 files ``<seg>.f32`` (rows
of ``dim`` values, no header). The database is the commit point: its ``segments`` table says
how many rows of each file are committed, and each chunk row names its ``(seg, off)``. A writer,
holding the database's write lock, cuts the file back to its committed length (dropping whatever
a killed writer appended and never committed), appends, ``fdatasync``\\ s, and only then commits
the rows that point there; so a reader never follows a pointer to bytes that are not on disk, and
a kill at any moment leaves at most an uncommitted tail that the next writer removes.

A compaction writes a segment's live rows to a new file and retires the old one by renaming it
``<seg>.f32.retired``; retired files are deleted by a later compaction once older than
``RETIRE_AFTER_S`` (a reader that began loading before the compaction still finds them).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from embedserve.errors import StoreError

SEGMENT_ROWS = 1 << 18  # 262,144 rows: 384 MiB of 384-d vectors
RETIRE_AFTER_S = 120.0


class SegmentFiles:
    def __init__(self, directory: Path, cid: int, dim: int) -> None:
        self.folder = Path(directory) / f"vec-{cid}"
        self.dim = dim
        self._row_bytes = dim * 4

    def path(self, seg: int) -> Path:
        return self.folder / f"{seg:06d}.f32"

    def append(self, seg: int, committed_rows: int, vectors: np.ndarray) -> None:
        """Write ``vectors`` at row ``committed_rows`` of segment ``seg`` (cutting any uncommitted
        tail first) and flush them to disk. Call holding the database's write lock."""
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        if data.ndim != 2 or data.shape[1] != self.dim:
            raise StoreError(f"segment vectors must have shape (n, {self.dim}), got {data.shape}")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path(seg), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                offset = committed_rows * self._row_bytes
                if os.fstat(fd).st_size != offset:
                    os.ftruncate(fd, offset)
                view = data.data.cast("B")
                while view:
                    written = os.pwrite(fd, view, offset)
                    view, offset = view[written:], offset + written
                os.fdatasync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"cannot write vectors to {self.path(seg)}: {exc.strerror or exc}") from None

    def read(self, seg: int, committed_rows: int, offsets: np.ndarray) -> np.ndarray:
        """The committed rows ``offsets`` of segment ``seg``, as a float32 (n, dim) array."""
        if len(offsets) == 0:
            return np.zeros((0, self.dim), np.float32)
        path = self.path(seg)
        if not path.exists():
            retired = path.with_name(path.name + ".retired")
            path = retired if retired.exists() else path
        try:
            mm = np.memmap(path, dtype=np.float32, mode="r", shape=(committed_rows, self.dim))
        except (OSError, ValueError) as exc:
            raise StoreError(f"vector segment {path} is missing or short: {exc}") from None
        offsets = np.asarray(offsets, dtype=np.int64)
        if len(offsets) > 1 and np.all(np.diff(offsets) == 1):  # a run: one sequential read
            out = np.array(mm[int(offsets[0]) : int(offsets[-1]) + 1])
        else:
            out = np.asarray(mm[offsets])
        del mm
        return out

    def retire(self, seg: int) -> None:
        path = self.path(seg)
        if path.exists():
            retired = path.with_name(path.name + ".retired")
            os.replace(path, retired)
            os.utime(retired)  # the grace period starts now

    def sweep(self) -> None:
        """Delete retired files old enough that no reader can still be loading from them."""
        if not self.folder.is_dir():
            return
        now = time.time()
        for p in self.folder.glob("*.retired"):
            try:
                if now - p.stat().st_mtime > RETIRE_AFTER_S:
                    p.unlink()
            except FileNotFoundError:
                pass

    def remove_all(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def disk_bytes(self) -> int:
        if not self.folder.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())
