"""embedserve: local sentence embeddings with ONNX Runtime, served like Ollama.

The public surface is ``__all__`` (pinned by ``tests/test_public_api.py``). Heavy modules
(onnxruntime, tokenizers) load lazily, on first use of ``Embedder`` or ``Collection``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from embedserve.errors import (
    CollectionError,
    CollectionNotFound,
    CorruptModel,
    EmbedServeError,
    EngineError,
    InputFileError,
    InputTooLong,
    InvalidInput,
    InvalidModelName,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
    PullError,
    StoreError,
    TooManyInputs,
    UpstreamError,
    UserError,
)
from embedserve.late_interaction import maxsim, maxsim_batch, maxsim_matrix
from embedserve.vectors import quantize_embeddings, similarity

if TYPE_CHECKING:
    from embedserve.embedder import Embedder
    from embedserve.index.collection import Collection
    from embedserve.reranker import Reranker

__version__ = "0.1.0"

_LAZY = {
    "Embedder": "embedserve.embedder",
    "Collection": "embedserve.index.collection",
    "Reranker": "embedserve.reranker",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'embedserve' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Collection",
    "CollectionError",
    "CollectionNotFound",
    "CorruptModel",
    "EmbedServeError",
    "Embedder",
    "EngineError",
    "InputFileError",
    "InputTooLong",
    "InvalidInput",
    "InvalidModelName",
    "ModelNotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PullError",
    "Reranker",
    "StoreError",
    "TooManyInputs",
    "UpstreamError",
    "UserError",
    "__version__",
    "maxsim",
    "maxsim_batch",
    "maxsim_matrix",
    "quantize_embeddings",
    "similarity",
]
