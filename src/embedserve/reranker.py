"""The library's reranker: ``Reranker("NAME").rank(query, documents, top_n=3)``.

A cross-encoder scores each (query, document) pair in one forward pass; a ColBERT checkpoint
scores by MaxSim between the query's and each document's token vectors. Either way the pairs are
sorted by length and cut into batches under the same padded-token budget as ``Embedder.encode``.
Scores are what the model's own pipeline gives: ``CrossEncoder.predict``'s (the model's activation,
sigmoid for a one-logit model unless its config says otherwise; ``raw=True`` for the logits), or
the MaxSim sum for ColBERT.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedserve.config import Settings
from embedserve.embedder import DEFAULT_BATCH_TOKENS, DEFAULT_MAX_BATCH, Embedder, plan_batches
from embedserve.engine.base import Engine, EngineInfo
from embedserve.errors import InvalidInput
from embedserve.late_interaction import maxsim_batch


@dataclass(frozen=True)
class RankedDocument:
    index: int  # position in the documents given
    score: float
    document: str | None = None


def check_documents(query: Any, documents: Any) -> list[str]:
    if not isinstance(query, str):
        raise InvalidInput("query must be a string")
    if isinstance(documents, str) or not isinstance(documents, Sequence):
        raise InvalidInput("documents must be a list of strings")
    for i, d in enumerate(documents):
        if not isinstance(d, str):
            raise InvalidInput(f"document {i} is a {type(d).__name__}, not a string")
    return list(documents)


def rank(scores: np.ndarray, documents: Sequence[str], top_n: int | None, return_documents: bool) -> list[RankedDocument]:
    """Indices by score, best first (ties keep input order), the first ``top_n``."""
    if top_n is not None and top_n < 1:
        raise InvalidInput(f"top_n must be at least 1, got {top_n}")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    if top_n is not None:
        order = order[:top_n]
    return [RankedDocument(int(i), float(scores[i]), documents[i] if return_documents else None)
            for i in order]


class Reranker:
    """Scores documents against a query with a cross-encoder or a ColBERT model."""

    def __init__(
        self,
        model: str,
        *,
        settings: Settings | None = None,
        threads: int | None = None,
        pull_progress: Callable[[Any], None] | None = None,
    ) -> None:
        self._embedder = Embedder(model, settings=settings, threads=threads,
                                  pull_progress=pull_progress)
        self._check()

    @classmethod
    def from_engine(cls, engine: Engine) -> Reranker:
        self = cls.__new__(cls)
        self._embedder = Embedder.from_engine(engine)
        self._check()
        return self

    def _check(self) -> None:
        engine = self._embedder.engine
        if not (callable(getattr(engine, "score_ids", None))
                or getattr(engine.info, "kind", "") == "colbert"):
            raise InvalidInput(
                f"model {engine.info.name!r} is not a reranker (a cross-encoder or a ColBERT model)"
            )

    @property
    def info(self) -> EngineInfo:
        return self._embedder.info

    @property
    def engine(self) -> Engine:
        return self._embedder.engine

    def score(
        self,
        query: str,
        documents: Sequence[str],
        *,
        truncate: bool = True,
        raw: bool = False,
        batch_tokens: int | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """One float32 score per document, in the documents' order."""
        docs = check_documents(query, documents)
        engine: Any = self._embedder.engine
        if not callable(getattr(engine, "score_ids", None)):  # ColBERT: MaxSim
            q = self._embedder.encode(query, output="token", role="query", truncate=truncate)
            d = self._embedder.encode(docs, output="token", truncate=truncate,
                                      batch_tokens=batch_tokens, batch_size=batch_size)
            return maxsim_batch(q, d)
        return self.predict([(query, d) for d in docs], truncate=truncate, raw=raw,
                            batch_tokens=batch_tokens, batch_size=batch_size)

    def predict(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        truncate: bool = True,
        raw: bool = False,
        batch_tokens: int | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Scores of (query, document) pairs, like ``CrossEncoder.predict`` (cross-encoders only)."""
        engine: Any = self._embedder.engine
        if not callable(getattr(engine, "score_ids", None)):
            raise InvalidInput(f"model {engine.info.name!r} does not score pairs; use score()")
        pairs = [tuple(p) if isinstance(p, list) else p for p in pairs]
        ids = engine.tokenize_pairs(pairs, truncate=truncate)
        out = np.empty(len(ids), np.float32)
        for batch in plan_batches([len(x) for x in ids], batch_tokens or DEFAULT_BATCH_TOKENS,
                                  batch_size or DEFAULT_MAX_BATCH):
            out[batch] = engine.score_ids([ids[i] for i in batch])
        return out if raw else activate_scores(engine, out)

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        return_documents: bool = False,
        truncate: bool = True,
    ) -> list[RankedDocument]:
        """Documents by score, best first: ``[RankedDocument(index, score, document?)]``."""
        docs = check_documents(query, documents)
        return rank(self.score(query, docs, truncate=truncate), docs, top_n, return_documents)


def activate_scores(engine: Any, logits: np.ndarray) -> np.ndarray:
    """The model's own activation on raw logits (identity for engines without one)."""
    from embedserve.engine.crossencoder import activate

    return activate(logits, getattr(engine, "activation", "identity"))
