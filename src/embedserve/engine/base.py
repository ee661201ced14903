"""The engine seam: tokenise texts, and turn token ids into pooled vectors.

Everything above the engine (library, batcher, server, index) talks to this protocol only, so a
:class:`~embedserve.engine.fake.FakeEngine` can stand in for ONNX Runtime in fast tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class EngineInfo:
    name: str  # display name, e.g. "all-minilm:latest"
    dim: int  # output dimensions
    max_tokens: int  # window, special tokens included (256 for all-minilm)
    pooling: str  # "mean" | "cls" | "max" | "mean_sqrt_len"
    normalize: bool  # the model's own pipeline ends in Normalize
    digest: str = ""  # sha256 of the weights
    variant: str = ""  # what else decides the vectors: quantization and graph format ("int8-g5")
    kind: str = "embedding"  # "embedding" | "colbert" (token vectors) | "reranker" (pair scores)
    # sentence-transformers prompts (name -> prefix) and the one applied when none is asked for
    prompts: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    default_prompt_name: str | None = None


@runtime_checkable
class Engine(Protocol):
    info: EngineInfo

    def tokenize(self, texts: Sequence[str], *, truncate: bool = True) -> list[list[int]]:
        """Token ids per text, special tokens included, cut at ``info.max_tokens`` when truncating.

        With ``truncate=False`` an over-long text raises ``InputTooLong(index, tokens, limit)``.
        """
        ...

    def embed_ids(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        """Pooled, *un-normalised* float32 vectors of shape (len(batch), dim); pads per batch."""
        ...

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of each non-special token of ``text``, untruncated (for chunking)."""
        ...


@runtime_checkable
class TokenEngine(Protocol):
    """An engine that also gives token vectors (embedders and ColBERT checkpoints)."""

    info: EngineInfo

    def embed_tokens(self, batch: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Un-normalised token vectors per input, one ``(tokens, dim)`` float32 array each: the
        vectors the model scores with (an embedder drops [CLS]/[SEP]; ColBERT keeps its markers
        and query expansion, and drops a document's punctuation)."""
        ...

    def embed_both(self, batch: Sequence[Sequence[int]]) -> tuple[np.ndarray, list[np.ndarray]]:
        """``embed_ids(batch)`` and ``embed_tokens(batch)`` from one run of the model, each
        bitwise what its own call gives (a multivector collection needs both of every chunk)."""
        ...


@runtime_checkable
class PairEngine(Protocol):
    """A cross-encoder: scores (query, document) pairs."""

    info: EngineInfo

    def tokenize_pairs(
        self, pairs: Sequence[tuple[str, str]], *, truncate: bool = True
    ) -> list[list[int]]:
        """``[CLS] query [SEP] document [SEP]`` ids, cut longest-first to ``info.max_tokens``."""
        ...

    def score_ids(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        """Raw logits, float32 ``(len(batch),)``."""
        ...


@runtime_checkable
class Encoder(Protocol):
    """Anything that turns texts into vectors: the library, an HTTP client, a fake."""

    def encode(self, texts: list[str]) -> np.ndarray: ...
