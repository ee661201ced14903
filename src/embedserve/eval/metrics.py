"""Retrieval metrics as trec_eval (and so pytrec_eval and BEIR) computes them.

* A run ranks documents by score, **descending**; equal scores are ordered by document id,
  **descending** (trec_eval's ``comp_sim_docno``), so results never depend on insertion order.
* Relevance is graded: a qrel ``rel >= 1`` is relevant; the gain in nDCG is ``rel`` itself (linear,
  trec_eval's default), discounted by ``log2(rank + 1)``; the ideal ranking sorts all judged
  relevant documents by gain.
* ``ndcg@k`` = trec_eval ``ndcg_cut_k``; ``map@k`` = ``map_cut_k`` (sum of precision at each
  relevant hit within k, over the number of relevant documents); ``recall@k`` = ``recall_k``;
  ``mrr@k`` = BEIR's MRR@k (1 / rank of the first relevant hit within k, else 0).
* A judged query whose qrels hold no relevant document scores 0 on every metric; the mean is over
  the judged queries that were ranked (BEIR averages over the queries pytrec_eval returns).

Pure Python and numpy; :func:`top_k` turns a score matrix into the runs these take.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "DEFAULT_METRICS",
    "Qrels",
    "Run",
    "evaluate_run",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "rank",
    "recall_at_k",
    "top_k",
]

Qrels = Mapping[str, Mapping[str, int]]  # query id -> doc id -> graded relevance
Run = Mapping[str, Mapping[str, float]]  # query id -> doc id -> score

DEFAULT_METRICS = ("ndcg@10", "map@100", "recall@100", "mrr@10")


def rank(scores: Mapping[str, float]) -> list[str]:
    """Document ids by score descending, ties by id descending (trec_eval's order)."""
    by_id = sorted(scores, reverse=True)
    return sorted(by_id, key=lambda d: -scores[d])  # stable: keeps id-descending among ties


def _check_k(k: int) -> None:
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")


def ndcg_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    _check_k(k)
    dcg = sum(
        qrels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if qrels.get(d, 0) > 0
    )
    gains = sorted((g for g in qrels.values() if g > 0), reverse=True)[:k]
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    return dcg / ideal if ideal > 0 else 0.0


def map_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    _check_k(k)
    n_rel = sum(1 for g in qrels.values() if g > 0)
    if n_rel == 0:
        return 0.0
    hits, total = 0, 0.0
    for i, d in enumerate(ranked[:k]):
        if qrels.get(d, 0) > 0:
            hits += 1
            total += hits / (i + 1)
    return total / n_rel


def recall_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    _check_k(k)
    n_rel = sum(1 for g in qrels.values() if g > 0)
    if n_rel == 0:
        return 0.0
    return sum(1 for d in ranked[:k] if qrels.get(d, 0) > 0) / n_rel


def mrr_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    _check_k(k)
    for i, d in enumerate(ranked[:k]):
        if qrels.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


_FUNCS = {"ndcg": ndcg_at_k, "map": map_at_k, "recall": recall_at_k, "mrr": mrr_at_k}


def _parse(metric: str) -> tuple[str, int]:
    name, _, k = metric.partition("@")
    if name not in _FUNCS or not k.isdigit() or int(k) <= 0:
        raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(_FUNCS)} as name@k")
    return name, int(k)


def evaluate_run(
    run: Run, qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS
) -> dict[str, float]:
    """Mean of each metric over the judged queries present in ``run``."""
    parsed = [(m, *_parse(m)) for m in metrics]
    judged = [q for q in qrels if q in run]
    if not judged:
        raise ValueError("no judged query was ranked")
    sums = dict.fromkeys(metrics, 0.0)
    for q in judged:
        ranked = rank(run[q])
        for metric, name, k in parsed:
            sums[metric] += _FUNCS[name](ranked, qrels[q], k)
    return {m: s / len(judged) for m, s in sums.items()}


def top_k(
    scores: np.ndarray, query_ids: Sequence[str], doc_ids: Sequence[str], k: int
) -> dict[str, dict[str, float]]:
    """The run of a (queries x docs) score matrix: each query's ``k`` best documents, with every
    document tied with the k-th kept too, so trec_eval's tie order decides who is in the top k."""
    n_docs = scores.shape[1]
    run: dict[str, dict[str, float]] = {}
    for row, qid in enumerate(query_ids):
        s = scores[row].astype(np.float64)
        if n_docs > k:
            cut = np.partition(s, n_docs - k)[n_docs - k]
            idx = np.flatnonzero(s >= cut)
        else:
            idx = np.arange(n_docs)
        run[qid] = {doc_ids[j]: float(s[j]) for j in idx}
    return run
