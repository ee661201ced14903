"""One GGUF file, read with the ``gguf`` package: its metadata as plain values, its tensors as float32.

Tensor types read: F32, F16, BF16 and Q8_0 (dequantised to float32); any other type is refused with
an error naming the type and the tensor, before anything is written. numpy shapes are the
row-major ones (the reverse of ggml's ``ne``), which is also Hugging Face's ``[out, in]`` order.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from embedserve.errors import InvalidInput, StoreError

READABLE_TYPES = ("F32", "F16", "BF16", "Q8_0")
POOLING_TYPES = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}


def _gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise StoreError(
            "reading GGUF files needs the gguf package: pip install 'embedserve[gguf]'"
        ) from None
    return gguf


class GGUFFile:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        gguf = _gguf()
        try:
            self._reader = gguf.GGUFReader(str(self.path), "r")
        except (ValueError, OSError, IndexError, KeyError) as err:
            raise StoreError(f"{self.path} is not a readable GGUF file ({err})") from None
        self._quants = gguf.quants

    @cached_property
    def metadata(self) -> dict[str, Any]:
        """Every key-value pair (``GGUF.*`` header fields left out); arrays become lists."""
        out: dict[str, Any] = {}
        for name, field in self._reader.fields.items():
            if name.startswith("GGUF."):
                continue
            value = field.contents()
            if isinstance(value, np.generic):
                value = value.item()
            out[name] = value
        return out

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    def key(self, suffix: str, default: Any = None) -> Any:
        """``<architecture>.<suffix>``."""
        return self.metadata.get(f"{self.architecture}.{suffix}", default)

    @property
    def pooling(self) -> str | None:
        """None for a model without ``<arch>.pooling_type`` (Ollama's test for a chat model)."""
        value = self.key("pooling_type")
        if value is None:
            return None
        return POOLING_TYPES.get(int(value), f"unknown ({value})")

    @property
    def is_embedding(self) -> bool:
        return self.pooling is not None

    @cached_property
    def tensor_types(self) -> dict[str, str]:
        return {t.name: t.tensor_type.name for t in self._reader.tensors}

    def check_types(self) -> None:
        for name, kind in self.tensor_types.items():
            if kind not in READABLE_TYPES:
                raise InvalidInput(
                    f"tensor {name!r} is {kind}, which embedserve cannot read "
                    f"(only {', '.join(READABLE_TYPES)}); re-quantise the model to one of those"
                )

    @property
    def file_type(self) -> str:
        """The most common tensor type among the weight matrices (``F16``, ``Q8_0``, ...)."""
        kinds = [t.tensor_type.name for t in self._reader.tensors if len(t.shape) > 1]
        return max(set(kinds), key=kinds.count) if kinds else "F32"

    def tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        """``(name, array)`` for every tensor, one at a time: F16 ones as float16 (exact, half the
        bytes), the others dequantised to float32."""
        self.check_types()
        for t in self._reader.tensors:
            shape = tuple(int(n) for n in reversed(t.shape))
            if t.tensor_type.name == "F16":
                data = np.asarray(t.data).view(np.float16)
            else:
                data = np.asarray(self._quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
            yield t.name, np.array(data.reshape(shape))
