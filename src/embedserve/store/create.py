"""``create NAME --from DIR|MODEL [--quantize int8]``: import a folder, or re-tag an installed model.

A folder must hold a BERT-family sentence-transformers model (see :mod:`embedserve.store.folder`);
its files are copied (hashed on the way) into staging and renamed into the store. From an installed
model, only a new manifest is written: the blob is shared. ``--quantize int8`` records
``quantization="int8"``; the engine builds the int8 graph from the fp32 weights when it loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embedserve.errors import InputFileError, InvalidInput
from embedserve.store.disk import DiskStore
from embedserve.store.files import copy_files, remove_tree
from embedserve.store.folder import inspect_folder
from embedserve.store.manifest import InstalledModel
from embedserve.store.names import is_valid
from embedserve.store.progress import SUCCESS, ProgressCallback, ProgressEvent, emit

QUANTIZATIONS = ("fp32", "int8")


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith((".", "/", "~"))
        or "\\" in text
        or text.count("/") > 2
        or not is_valid(text)
    )


def create_model(
    store: DiskStore,
    name: str,
    *,
    source: Path | str,
    quantize: str | None = None,
    progress: ProgressCallback | None = None,
    training: dict[str, Any] | None = None,
) -> InstalledModel:
    canon = store.resolve(name)
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise InvalidInput(
            f"unsupported quantization {quantize!r}; choose one of: {', '.join(QUANTIZATIONS)}"
        )

    folder: Path | None = None
    if isinstance(source, Path):
        folder = source
    else:
        candidate = Path(source).expanduser()
        if candidate.is_dir():
            folder = candidate
        elif _looks_like_path(source):
            raise InputFileError(f"{source}: no such folder")
    if folder is None:  # an installed model
        model = store.get(str(source))
        emit(progress, "writing manifest")
        created = store.write_alias(
            model, canon, quantization=quantize or model.quantization, source=f"model {model.name}"
        )
        emit(progress, SUCCESS)
        return created

    folder = folder.expanduser().resolve()
    emit(progress, f"reading {folder}")
    info = inspect_folder(folder)
    work = store.staging("create")
    try:
        staged = work / "model"

        def on_bytes(rel: str, done: int, total: int) -> None:
            if progress is not None and total > (1 << 20):
                progress(ProgressEvent(f"copying {rel}", None, total, done))

        files = copy_files(folder, staged, info.files, on_bytes)
        emit(progress, "writing manifest")
        model = store.install(
            staged,
            files,
            info,
            name=canon,
            quantization=quantize or "fp32",
            source=f"folder {folder}",
            card=None,
            training=training,
        )
    finally:
        remove_tree(work)
    emit(progress, SUCCESS)
    return model
