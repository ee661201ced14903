"""Reading the user's input files, with one-line errors that name the file (and line)."""

from __future__ import annotations

from pathlib import Path

from embedserve.errors import InputFileError


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a directory, not a file") from None
    except OSError as err:
        raise InputFileError(f"{path}: {err.strerror or err}") from None


def decode_utf8(data: bytes, origin: str) -> str:
    """The text of ``data``; a non-UTF-8 file names its first bad line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise InputFileError(f"{origin}: line {line} is not valid UTF-8") from None
