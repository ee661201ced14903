"""A deterministic, dependency-free engine for fast tests of the server, batcher and index.

Words are tokens; each token id maps to a fixed pseudo-random vector; a text's vector is the mean
of its tokens' vectors, so texts that share words are similar, as with a real model.
"""

from __future__ import annotations

import re
import threading
import time
import zlib
from collections.abc import Callable, Sequence

import numpy as np

from embedserve.engine.base import EngineInfo
from embedserve.errors import InputTooLong

_TOKEN = re.compile(r"\w+|[^\w\s]")
CLS, SEP = 101, 102


class FakeEngine:
    def __init__(
        self,
        name: str = "fake:latest",
        dim: int = 32,
        max_tokens: int = 64,
        *,
        delay_per_batch: float = 0.0,
        fail: Callable[[Sequence[Sequence[int]]], None] | None = None,
    ) -> None:
        self.info = EngineInfo(
            name=name, dim=dim, max_tokens=max_tokens, pooling="mean", normalize=True, digest="0" * 64
        )
        self.delay_per_batch = delay_per_batch
        self.fail = fail  # called with each batch; raise to simulate an engine crash
        self.batches: list[int] = []  # sizes of the batches run, for batching tests
        self._lock = threading.Lock()
        self._table: dict[int, np.ndarray] = {}

    def _token_id(self, word: str) -> int:
        return 1000 + zlib.crc32(word.lower().encode()) % 29000

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _TOKEN.finditer(text)]

    def tokenize(self, texts: Sequence[str], *, truncate: bool = True) -> list[list[int]]:
        out = []
        limit = self.info.max_tokens
        for i, text in enumerate(texts):
            ids = [CLS] + [self._token_id(m.group(0)) for m in _TOKEN.finditer(text)] + [SEP]
            if len(ids) > limit:
                if not truncate:
                    raise InputTooLong(i, len(ids), limit)
                ids = ids[: limit - 1] + [SEP]
            out.append(ids)
        return out

    def _vector(self, token: int) -> np.ndarray:
        vec = self._table.get(token)
        if vec is None:
            vec = np.random.default_rng(token).standard_normal(self.info.dim).astype(np.float32)
            self._table[token] = vec
        return vec

    def embed_ids(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        if self.fail is not None:
            self.fail(batch)
        if self.delay_per_batch:
            time.sleep(self.delay_per_batch)
        with self._lock:
            self.batches.append(len(batch))
            rows = [np.mean([self._vector(t) for t in ids], axis=0) for ids in batch]
        if not rows:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        return np.stack(rows).astype(np.float32)

    def embed_tokens(self, batch: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Each text token's fixed vector ([CLS] and [SEP] dropped, as the ONNX engine does)."""
        if self.fail is not None:
            self.fail(batch)
        with self._lock:
            self.batches.append(len(batch))
            return self._tokens(batch)

    def embed_both(self, batch: Sequence[Sequence[int]]) -> tuple[np.ndarray, list[np.ndarray]]:
        """``embed_ids`` and ``embed_tokens`` as one batch (counted once in ``batches``)."""
        pooled = self.embed_ids(batch)
        with self._lock:
            return pooled, self._tokens(batch)

    def _tokens(self, batch: Sequence[Sequence[int]]) -> list[np.ndarray]:
        return [np.stack([self._vector(t) for t in ids[1:-1]]).astype(np.float32)
                if len(ids) > 2 else np.zeros((0, self.info.dim), np.float32) for ids in batch]
