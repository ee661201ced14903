"""``import-ollama``: install the embedding models of an Ollama store into embedserve's store.

For each model: the manifest's GGUF layer is found, its blob checked against the manifest's
size and sha256 (with progress: blobs run to gigabytes), refused early if it is a chat model or
holds what embedserve cannot build, converted into a staging folder (:mod:`.convert`) and
installed like ``create --from DIR`` (a content-addressed blob and a manifest). The source label
records the Ollama name, the GGUF's tensor type and the layer digest, so importing the same
layer again is a no-op, and a model that came from elsewhere is never overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass

from embedserve.errors import InvalidInput, StoreError
from embedserve.store.disk import DiskStore
from embedserve.store.files import hash_files, remove_tree
from embedserve.store.folder import inspect_folder
from embedserve.store.manifest import InstalledModel
from embedserve.store.ollama.convert import check_convertible, write_folder
from embedserve.store.ollama.gguf_file import GGUFFile
from embedserve.store.ollama.layout import OllamaModel, OllamaStore
from embedserve.store.progress import SUCCESS, ProgressCallback, ProgressEvent, Throttle, emit

SOURCE_PREFIX = "ollama "
UNREADABLE = "unreadable"  # Candidate.architecture of a model whose GGUF cannot be opened


@dataclass(frozen=True)
class Candidate:
    model: OllamaModel
    embedding: bool
    architecture: str


def survey(ollama: OllamaStore) -> list[Candidate]:
    """Every model in the store and whether it is an embedding model (GGUF headers only)."""
    out = []
    for model in ollama.models():
        try:
            gg = GGUFFile(ollama.blob(model.model_layer))
        except StoreError:
            out.append(Candidate(model, False, UNREADABLE))
            continue
        out.append(Candidate(model, gg.is_embedding, gg.architecture))
    return out


def source_label(model: OllamaModel, file_type: str) -> str:
    return f"{SOURCE_PREFIX}{model.name.display} {file_type} sha256:{model.model_layer.digest}"


def import_model(
    store: DiskStore,
    ollama: OllamaStore,
    model: OllamaModel,
    *,
    progress: ProgressCallback | None = None,
) -> tuple[InstalledModel, bool]:
    """Install ``model``; returns it and whether anything was done (False: already imported)."""
    display = model.name.display
    name = store.resolve(display)
    layer = model.model_layer
    blob = ollama.blob(layer)
    try:
        gg = GGUFFile(blob)
    except StoreError:
        ollama.verified_blob(layer)  # a damaged blob says so; else the file is not GGUF at all
        raise
    try:
        check_convertible(gg)
    except InvalidInput as err:
        raise InvalidInput(f"cannot import '{display}': {err}") from None
    source = source_label(model, gg.file_type)
    existing = store.find(name)
    if existing is not None:
        if existing.source == source:
            return existing, False
        if not existing.source.startswith(SOURCE_PREFIX):
            raise InvalidInput(
                f"'{name}' is already installed (from {existing.source}); remove it first "
                f"(embedserve rm {name}) to replace it with Ollama's '{display}'"
            )
    throttle = Throttle(progress)

    def on_bytes(done: int, total: int) -> None:
        throttle(ProgressEvent(f"verifying {display}", f"sha256:{layer.digest}", total, done),
                 force=done == total)

    emit(progress, f"verifying sha256 digest of {blob.name[:19]}")
    ollama.verified_blob(layer, on_bytes)
    work = store.staging("create")
    try:
        staged = work / "model"
        write_folder(gg, staged, lambda step: emit(progress, step))
        info = inspect_folder(staged)
        files = hash_files(staged, info.files)
        emit(progress, "writing manifest")
        installed = store.install(
            staged, files, info, name=name, quantization="fp32", source=source, card=None
        )
    finally:
        remove_tree(work)
    emit(progress, SUCCESS)
    return installed, True
