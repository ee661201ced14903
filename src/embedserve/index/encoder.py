"""What the index needs from a model: vectors, its identity and window, and token offsets.

The library's ``Embedder`` satisfies this protocol; so does :class:`EngineEncoder`, a thin wrapper
around any :class:`~embedserve.engine.base.Engine` (the fake engine in tests). The index never
imports onnxruntime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from embedserve.engine.base import Engine, EngineInfo
from embedserve.vectors import l2_normalize


@runtime_checkable
class IndexEncoder(Protocol):
    info: EngineInfo

    def encode(self, texts: list[str], **kwargs: Any) -> np.ndarray: ...

    def token_spans(self, text: str) -> list[tuple[int, int]]: ...


class EngineEncoder:
    """Minimal encoder over an :class:`Engine`: tokenize (truncating), embed, L2-normalise."""

    def __init__(self, engine: Engine, batch_size: int = 32) -> None:
        self.engine = engine
        self.info = engine.info
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str], **_: Any) -> np.ndarray:
        out = []
        for i in range(0, len(texts), self.batch_size):
            ids = self.engine.tokenize(list(texts[i : i + self.batch_size]), truncate=True)
            out.append(self.engine.embed_ids(ids))
        if not out:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        return l2_normalize(np.concatenate(out))

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return self.engine.token_spans(text)


def encode_normalized(encoder: IndexEncoder, texts: list[str]) -> np.ndarray:
    """Encode and L2-normalise (whatever the encoder's own default), as float32 (n, dim)."""
    if not texts:
        return np.zeros((0, encoder.info.dim), dtype=np.float32)
    vecs = np.asarray(encoder.encode(list(texts)), dtype=np.float32)
    if vecs.ndim != 2 or vecs.shape[0] != len(texts):
        from embedserve.errors import EngineError

        raise EngineError(f"encoder returned shape {vecs.shape} for {len(texts)} texts")
    return l2_normalize(vecs)
