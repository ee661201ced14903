"""Append-only vector segment files: where the SQLite store keeps chunk vectors.

Each collection has a folder ``vec-<collection id>/`` of raw float32 files ``<seg>.f32`` (rows
of ``dim`` values, no header), each with a row sidecar ``<seg>.rows``: per row, five int64s
``(chunk key, document key, chunk index, start, end)`` (``ROW_FIELDS``), so that a reader can load
a whole collection from two sequential file reads instead of a million SQL rows. The database is
the commit point: its ``segments`` table says how many rows of each file are committed, and each
chunk row names its ``(seg, off)``. A writer, holding the database's write lock, cuts both files
back to their committed length (dropping whatever a killed writer appended and never committed),
appends, ``fdatasync``\\ s, and only then commits the rows that point there; so a reader never
follows a pointer to bytes that are not on disk, and a kill at any moment leaves at most an
uncommitted tail that the next writer removes. Readers check a sidecar against the database
before trusting it (``sqlite_reads.py``); a segment written before sidecars existed has a short
or missing one, which the next write to it rebuilds from the database.

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
ROW_FIELDS = 5  # chunk key, document key, chunk index, start, end (int64 each)
_ROW_BYTES = ROW_FIELDS * 8


class SegmentFiles:
    def __init__(self, directory: Path, cid: int, dim: int) -> None:
        self.folder = Path(directory) / f"vec-{cid}"
        self.dim = dim
        self._row_bytes = dim * 4

    def path(self, seg: int) -> Path:
        return self.folder / f"{seg:06d}.f32"

    def rows_path(self, seg: int) -> Path:
        return self.folder / f"{seg:06d}.rows"

    def append(self, seg: int, committed_rows: int, vectors: np.ndarray, rows: np.ndarray) -> None:
        """Write ``vectors`` and their sidecar ``rows`` (shape (n, ROW_FIELDS)) at row
        ``committed_rows`` of segment ``seg`` (cutting any uncommitted tail first) and flush them
        to disk. Call holding the database's write lock."""
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        meta = np.ascontiguousarray(rows, dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != self.dim:
            raise StoreError(f"segment vectors must have shape (n, {self.dim}), got {data.shape}")
        if meta.shape != (len(data), ROW_FIELDS):
            raise StoreError(f"segment rows must have shape ({len(data)}, {ROW_FIELDS}), got {meta.shape}")
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_at(self.path(seg), committed_rows * self._row_bytes, data)
        _write_at(self.rows_path(seg), committed_rows * _ROW_BYTES, meta)

    def rewrite_rows(self, seg: int, rows: np.ndarray) -> None:
        """Replace segment ``seg``'s sidecar with ``rows`` (rebuilt from the database by a writer
        holding the write lock, for a segment written before sidecars existed or one a reader found
        wrong)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.rows_path(seg)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        _write_at(tmp, 0, np.ascontiguousarray(rows, dtype=np.int64))
        os.replace(tmp, path)  # a reader sees the old file or the new one, never half of one

    def rows_length(self, seg: int) -> int:
        """How many sidecar rows segment ``seg`` has on disk (committed or not)."""
        try:
            return self._existing(self.rows_path(seg)).stat().st_size // _ROW_BYTES
        except FileNotFoundError:
            return 0

    def read_rows(self, seg: int, committed_rows: int) -> np.ndarray | None:
        """The sidecar's first ``committed_rows`` rows, shape (n, ROW_FIELDS); ``None`` when the
        file is missing or shorter (a segment written before sidecars, or by a writer that died)."""
        try:
            with open(self._existing(self.rows_path(seg)), "rb") as f:
                out = np.empty((committed_rows, ROW_FIELDS), dtype=np.int64)
                if f.readinto(memoryview(out).cast("B")) != out.nbytes:
                    return None
                return out
        except FileNotFoundError:
            return None

    def read_all(self, seg: int, committed_rows: int, out: np.ndarray) -> None:
        """Read the first ``committed_rows`` vectors of segment ``seg`` into ``out`` (one
        sequential read)."""
        for attempt in range(2):  # a compaction may retire the file between the check and the open
            path = self._existing(self.path(seg))
            try:
                with open(path, "rb") as f:
                    got = f.readinto(memoryview(out[:committed_rows]).cast("B"))
                break
            except FileNotFoundError:
                if attempt:
                    raise StoreError(f"vector segment {path} is missing") from None
            except OSError as exc:
                raise StoreError(f"vector segment {path} is unreadable: {exc}") from None
        if got != committed_rows * self._row_bytes:
            raise StoreError(f"vector segment {path} is short: {got} bytes of {committed_rows * self._row_bytes}")

    def _existing(self, path: Path) -> Path:
        """``path``, or its retired name when a compaction retired it meanwhile."""
        if path.exists():
            return path
        retired = path.with_name(path.name + ".retired")
        return retired if retired.exists() else path

    def read(self, seg: int, committed_rows: int, offsets: np.ndarray) -> np.ndarray:
        """The committed rows ``offsets`` of segment ``seg``, as a float32 (n, dim) array."""
        if len(offsets) == 0:
            return np.zeros((0, self.dim), np.float32)
        path = self._existing(self.path(seg))
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
        for path in (self.path(seg), self.rows_path(seg)):
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


def _write_at(path: Path, offset: int, data: np.ndarray) -> None:
    """Cut ``path`` to ``offset`` bytes, write ``data`` there and ``fdatasync``."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
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
        raise StoreError(f"cannot write to {path}: {exc.strerror or exc}") from None
