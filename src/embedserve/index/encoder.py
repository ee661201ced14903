"""What the index needs from a model: vectors, its identity and window, and token offsets.

The library's ``Embedder`` satisfies this protocol, also around any
:class:`~embedserve.engine.base.Engine` (``Embedder.from_engine(FakeEngine())`` in tests). The index
never imports onnxruntime.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from embedserve.engine.base import EngineInfo
from embedserve.prompts import role_prompt
from embedserve.vectors import l2_normalize


@runtime_checkable
class IndexEncoder(Protocol):
    info: EngineInfo

    def encode(self, texts: list[str], **kwargs: Any) -> np.ndarray: ...

    def token_spans(self, text: str) -> list[tuple[int, int]]: ...


def encode_normalized(encoder: IndexEncoder, texts: list[str], role: str = "") -> np.ndarray:
    """Encode and L2-normalise (whatever the encoder's own default), as float32 (n, dim).

    ``role`` ("query" or "document"): a model with a prompt for that side (e5's ``query: ``,
    nomic's ``search_document: ``...) gets it, by name (:func:`embedserve.prompts.role_prompt`).
    """
    if not texts:
        return np.zeros((0, encoder.info.dim), dtype=np.float32)
    prompt_name = role_prompt(getattr(encoder.info, "prompts", None) or {}, role) if role else None
    if prompt_name is not None:
        vecs = np.asarray(encoder.encode(list(texts), prompt_name=prompt_name), dtype=np.float32)
    else:
        vecs = np.asarray(encoder.encode(list(texts)), dtype=np.float32)
    if vecs.ndim != 2 or vecs.shape[0] != len(texts):
        from embedserve.errors import EngineError

        raise EngineError(f"encoder returned shape {vecs.shape} for {len(texts)} texts")
    return l2_normalize(vecs)


def encode_documents(
    encoder: IndexEncoder, texts: list[str], *, tokens: bool = False
) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """:func:`encode_normalized` of documents' chunks and, with ``tokens`` (a multivector
    collection), their unit token vectors from the same model runs when the encoder offers
    ``encode_with_tokens`` (``Embedder``); otherwise None: the caller makes them separately."""
    both = getattr(encoder, "encode_with_tokens", None) if tokens and texts else None
    if both is None:
        return encode_normalized(encoder, texts, "document"), None
    prompt_name = role_prompt(getattr(encoder.info, "prompts", None) or {}, "document")
    dense, token_vectors = both(list(texts), prompt_name=prompt_name)
    dense = np.asarray(dense, dtype=np.float32)
    if dense.ndim != 2 or dense.shape[0] != len(texts) or len(token_vectors) != len(texts):
        from embedserve.errors import EngineError

        raise EngineError(f"encoder returned {dense.shape} and {len(token_vectors)} token arrays "
                          f"for {len(texts)} texts")
    return l2_normalize(dense), list(token_vectors)
