"""Files, not models: hashing, copying, removing, and a safetensors file's header.

The leaves under :mod:`.folder` (what a model folder holds) and :mod:`.disk` (the store's blobs).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedserve.errors import InputFileError

_CHUNK = 1 << 20


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return h.hexdigest()


def copy_files(
    src: Path,
    dest: Path,
    files: tuple[str, ...],
    on_bytes: Callable[[str, int, int], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Copy ``files`` from ``src`` into ``dest``, hashing as it goes: ``{rel: {size, sha256}}``."""
    out: dict[str, dict[str, Any]] = {}
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        total = (src / rel).stat().st_size
        done = 0
        with (src / rel).open("rb") as fin, target.open("wb") as fout:
            while chunk := fin.read(_CHUNK):
                fout.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if on_bytes is not None:
                    on_bytes(rel, done, total)
        out[rel] = {"size": done, "sha256": h.hexdigest()}
    return out


def hash_files(folder: Path, files: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    return {
        rel: {"size": (folder / rel).stat().st_size, "sha256": sha256_file(folder / rel)}
        for rel in files
    }


def tree_digest(files: dict[str, dict[str, Any]]) -> str:
    """One sha256 for a whole folder: over the sorted ``path\\0sha256\\n`` lines of its files."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]['sha256']}\n".encode())
    return h.hexdigest()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def safetensors_header(weights: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file: tensor name -> {dtype, shape, data_offsets}."""
    try:
        with weights.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100_000_000:
                raise ValueError("header too large")
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as err:
        raise InputFileError(f"{weights} is not a safetensors file ({err})") from None
    if not isinstance(header, dict):
        raise InputFileError(f"{weights} is not a safetensors file (bad header)")
    return header


def count_parameters(weights: Path) -> int:
    """Number of floating-point values in a safetensors file (its header only is read)."""
    header = safetensors_header(weights)
    return sum(
        math.prod(v["shape"])
        for k, v in header.items()
        if k != "__metadata__" and str(v.get("dtype", "")).startswith(("F", "BF"))
    )
