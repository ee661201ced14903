"""Corpus shards: fixed row ranges of the input files, planned once, read anywhere.

A shard is the unit of work, of output and of resumption: rows ``[start, stop)`` of one input
file, embedded together (so its batches, and therefore its bytes, are the same on every run) and
written as one output file. Planning scans line files once for row counts and byte offsets (a
worker seeks straight to its shard) and reads Parquet row counts from the footer. Paths are local
or any URI pyarrow's filesystems open (``s3://``, ``gs://``, ``hdfs://``...).

Row ids: the record's ``id`` field when it has one, else ``PATH:N`` (N the 1-based line of a text
or JSONL file, the 1-based row of a Parquet or CSV file). A row without usable text (not JSON, no
string text field, empty, not UTF-8) is a *bad row*: reported with its id, never dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from embedserve.errors import InputFileError

LINE_FORMATS = ("text", "jsonl")
SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
}


@dataclass(frozen=True)
class Shard:
    index: int  # global, in input order: the output file's number
    path: str
    fmt: str  # "text" | "jsonl" | "parquet" | "csv"
    start: int  # first row (0-based, within the file)
    stop: int
    offset: int = 0  # bytes [offset, end) hold the shard's lines (line formats)
    end: int = 0
    line: int = 1  # 1-based line number of the first row (line formats)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_format(path: str) -> str:
    lower = path.lower()
    for suffix, fmt in SUFFIXES.items():
        if lower.endswith(suffix):
            return fmt
    return "text"


def open_input(path: str, mode: str = "rb") -> Any:
    """A binary file object for a local path or a pyarrow filesystem URI."""
    import pyarrow.fs as pafs

    try:
        if "://" in path:
            fs, inner = pafs.FileSystem.from_uri(path)
        else:
            fs, inner = pafs.LocalFileSystem(), path
        info = fs.get_file_info(inner)
        if info.type == pafs.FileType.NotFound:
            raise InputFileError(f"{path}: no such file")
        if info.type == pafs.FileType.Directory:
            raise InputFileError(f"{path}: is a directory, not a file")
        return fs.open_input_file(inner)
    except InputFileError:
        raise
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{path}: {exc}") from None


def _is_row(raw: bytes, fmt: str) -> bool:
    """Blank lines are JSONL separators; in a text file every line is a row (empty ones bad)."""
    return fmt == "text" or bool(raw.strip())


def plan(paths: list[str], shard_rows: int) -> list[Shard]:
    shards: list[Shard] = []
    for path in paths:
        fmt = file_format(path)
        if fmt in LINE_FORMATS:
            shards.extend(_plan_lines(path, fmt, shard_rows, len(shards)))
        else:
            rows = _table_rows(path, fmt)
            for start in range(0, rows, shard_rows):
                shards.append(Shard(len(shards), path, fmt, start, min(rows, start + shard_rows)))
    return shards


def _plan_lines(path: str, fmt: str, shard_rows: int, first: int) -> list[Shard]:
    with open_input(path) as f:
        data = f.read()
    out: list[Shard] = []
    row = offset = 0
    current: tuple[int, int, int] | None = None  # first row, its byte offset, its line

    def close(end: int) -> None:
        if current is not None:
            start, at, line = current
            out.append(Shard(first + len(out), path, fmt, start, row, at, end, line))

    for number, raw in enumerate(_lines(data), start=1):
        if _is_row(raw, fmt):
            if row % shard_rows == 0:
                close(offset)
                current = (row, offset, number)
            row += 1
        offset += len(raw) + 1
    close(len(data))
    return out


def _lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the end of the last line, not an empty row
    return lines


def _table_rows(path: str, fmt: str) -> int:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            with open_input(path) as f:
                return int(pq.ParquetFile(f).metadata.num_rows)
        except InputFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise InputFileError(f"{path}: not a readable Parquet file ({exc})") from None
    return len(_read_csv(path))


def _read_csv(path: str) -> Any:
    import pyarrow.csv as pacsv

    try:
        with open_input(path) as f:
            return pacsv.read_csv(f)
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputFileError(f"{path}: not a readable CSV file ({exc})") from None


# -- reading one shard -------------------------------------------------------------------------


@dataclass
class Rows:
    ids: list[str]
    texts: list[str]
    bad: list[dict[str, str]]  # {"id", "error"}


def _text_of(record: Any, text_field: str) -> tuple[str | None, str]:
    if not isinstance(record, dict):
        return None, "not a JSON object"
    value = record.get(text_field)
    if not isinstance(value, str):
        return None, f"no string {text_field!r} field"
    return value, ""


def _row_id(record: Any, id_field: str, fallback: str) -> str:
    if isinstance(record, dict) and record.get(id_field) is not None:
        return str(record[id_field])
    return fallback


def read_shard(shard: Shard, text_field: str = "text", id_field: str = "id") -> Rows:
    out = Rows([], [], [])

    def add(row_id: str, text: str | None, error: str) -> None:
        if text is not None and not text.strip():
            text, error = None, "empty text"
        if text is None:
            out.bad.append({"id": row_id, "error": error})
        else:
            out.ids.append(row_id)
            out.texts.append(text)

    if shard.fmt in LINE_FORMATS:
        for number, raw in _shard_lines(shard):
            where = f"{shard.path}:{number}"
            try:
                line = raw.decode("utf-8").removesuffix("\r")
            except UnicodeDecodeError:
                add(where, None, "not valid UTF-8")
                continue
            if number == 1:
                line = line.removeprefix("\ufeff")
            if shard.fmt == "text":
                add(where, line, "")
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                add(where, None, f"not valid JSON ({err.msg})")
                continue
            text, error = _text_of(record, text_field)
            add(_row_id(record, id_field, where), text, error)
        return out
    for n, record in _table_records(shard, text_field, id_field):
        text, error = _text_of(record, text_field)
        add(_row_id(record, id_field, f"{shard.path}:{n}"), text, error)
    return out


def _shard_lines(shard: Shard) -> Iterator[tuple[int, bytes]]:
    with open_input(shard.path) as f:
        f.seek(shard.offset)
        data = f.read(shard.end - shard.offset)
    rows = 0
    for number, raw in enumerate(_lines(data), start=shard.line):
        if rows >= shard.stop - shard.start:
            return
        if _is_row(raw, shard.fmt):
            rows += 1
            yield number, raw


def _table_records(shard: Shard, text_field: str, id_field: str) -> Iterator[tuple[int, Any]]:
    if shard.fmt == "parquet":
        import pyarrow.parquet as pq

        with open_input(shard.path) as f:
            pf = pq.ParquetFile(f)
            names = set(pf.schema_arrow.names)
            if text_field not in names:
                raise InputFileError(f"{shard.path}: no column {text_field!r}")
            columns = [c for c in (text_field, id_field) if c in names]
            table = pf.read(columns=columns).slice(shard.start, shard.stop - shard.start)
    else:
        table = _read_csv(shard.path)
        if text_field not in table.column_names:
            raise InputFileError(f"{shard.path}: no column {text_field!r}")
        table = table.slice(shard.start, shard.stop - shard.start)
    for i, record in enumerate(table.to_pylist()):
        yield shard.start + i + 1, record
