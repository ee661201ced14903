"""Re-scoring a collection's dense candidates: ``query(..., rerank=..., candidates=N)``.

``rerank="maxsim"``: MaxSim over token vectors (the collection's multivector mode,
:mod:`embedserve.index.multivector`). ``rerank="MODEL"``: a cross-encoder or ColBERT model
(:class:`~embedserve.reranker.Reranker`) scores the query against each candidate chunk's text. The
hits come back best first by the new score (``QueryHit.score``), the first ``top_k`` of them.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from embedserve.errors import CollectionError
from embedserve.index import multivector
from embedserve.late_interaction import maxsim_batch

MAXSIM = "maxsim"
DEFAULT_CANDIDATES = 100
_rerankers: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def check(rerank: str | None, candidates: int) -> None:
    if rerank is not None and (not isinstance(rerank, str) or not rerank.strip()):
        raise CollectionError("rerank must be a model name or 'maxsim'")
    if not isinstance(candidates, int) or isinstance(candidates, bool) or candidates < 1:
        raise CollectionError(f"candidates must be a positive integer, got {candidates!r}")


def reranker(name: str, settings: Any) -> Any:
    """A loaded :class:`Reranker`, kept per (home, name) for the process."""
    from embedserve.reranker import Reranker

    key = (str(settings.home), name)
    with _lock:
        if key not in _rerankers:
            _rerankers[key] = Reranker(name, settings=settings)
        return _rerankers[key]


def rescore(collection: Any, encoder: Any, query: str, hits: Sequence[Any], rerank: str,
            top_k: int) -> list[Any]:
    if not hits:
        return []
    if rerank == MAXSIM:
        q = multivector.encode_tokens(encoder, [query], role="query")[0]
        scores = maxsim_batch(q, multivector.chunk_tokens(collection, encoder, hits))
    else:
        scores = reranker(rerank, collection.settings).score(query, [h.text for h in hits])
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")[:top_k]
    return [dataclasses.replace(hits[i], score=float(scores[i])) for i in order]
