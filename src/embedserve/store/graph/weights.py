"""A model's tensors from ``model.safetensors`` (numpy, no torch), under names without the
checkpoint's own prefix (``bert.``, ``roberta.``, ``0.auto_model.``, ...)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedserve.errors import StoreError

_PREFIXES = ("0.auto_model.", "bert.", "roberta.", "xlm_roberta.", "mpnet.", "model.")


def load_weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    path = folder / "model.safetensors"
    if not path.exists():
        raise StoreError(f"{folder} has no model.safetensors")
    raw = load_file(str(path))
    out: dict[str, np.ndarray] = {}
    for key, value in raw.items():
        for prefix in _PREFIXES:
            key = key.removeprefix(prefix)
        out[key] = value
    return out


class Weights:
    """Float32 tensors by name; a missing one is a clear StoreError naming it."""

    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        self.tensors = tensors

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def get(self, name: str) -> np.ndarray:
        try:
            return self.tensors[name].astype(np.float32)
        except KeyError:
            raise StoreError(f"model.safetensors lacks tensor {name!r}") from None

    def optional(self, name: str) -> np.ndarray | None:
        return self.get(name) if name in self.tensors else None
