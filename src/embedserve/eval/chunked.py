"""Retrieval scored through a real collection: documents chunked into token windows, each scoring
as its best window (what ``embedserve index`` does), instead of truncated at the model's window.

The collection lives in a temporary folder removed afterwards; it needs an encoder with
``info`` and ``token_spans`` (the library's ``Embedder``); exact search, so the ranking is the
same one plain scoring would give for unchunked documents.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedserve.errors import InvalidInput
from embedserve.eval.formats import RetrievalData
from embedserve.eval.metrics import evaluate_run
from embedserve.eval.tasks import metrics_of

__all__ = ["collection_scores"]

_BATCH = 64


def collection_scores(
    task: RetrievalData, encoder: Any, progress: Callable[[int], None] | None = None
) -> dict[str, float]:
    """The task's metrics with its corpus added to a fresh collection and queried there."""
    from embedserve.config import Settings
    from embedserve.index.collection import Collection
    from embedserve.index.encoder import IndexEncoder, encode_normalized
    from embedserve.index.search import SearchConfig

    if not isinstance(encoder, IndexEncoder):
        raise InvalidInput("--chunked needs an embedserve model (it indexes through a collection)")
    k = max(int(m.split("@")[1]) for m in metrics_of(task))
    queries = task.judged_queries
    with tempfile.TemporaryDirectory(prefix="embedserve-eval-") as tmp:
        settings = Settings(home=Path(tmp))
        with Collection.open(
            "eval", settings=settings, encoder=encoder, search=SearchConfig(strategy="exact")
        ) as col:
            done = [0]

            def on_batch(docs: int, _chunks: int) -> None:
                if progress is not None:
                    progress(docs - done[0])
                done[0] = docs

            col.add(
                [{"id": i, "text": t} for i, t in task.corpus.items()],
                batch_size=_BATCH,
                progress=on_batch,
            )
            qv = encode_normalized(encoder, [task.queries[q] for q in queries])
            if progress is not None:
                progress(len(queries))
            hits = col.search_vectors(qv, top_k=min(k, len(task.corpus)))
    run = {q: {h.id: float(h.score) for h in hs} for q, hs in zip(queries, hits)}
    return evaluate_run(run, task.qrels, metrics_of(task))
