"""Embedding quality of any encoder on a set of tasks (:mod:`embedserve.eval.tasks`).

Pure logic over an :class:`~embedserve.engine.base.Encoder` (anything with
``encode(list[str]) -> ndarray``): the library's ``Embedder``, sentence-transformers behind an
adapter, or a fake. Vectors are L2-normalised here, so cosine = dot whatever the encoder does.

* STS: each unique sentence is encoded once; score = cosine(s1, s2); Spearman vs the gold scores.
* Retrieval: every document and every judged query is encoded; all documents are ranked by
  cosine per query; nDCG@10, MAP@100, Recall@100, MRR@10 as trec_eval computes them
  (:mod:`embedserve.eval.metrics`). ``chunked=True`` ranks through a temporary collection
  instead (:mod:`embedserve.eval.chunked`): long documents are split into windows and score as
  their best window, where plain encoding truncates them at the model's window.

:func:`compare` puts a model beside a baseline (the first model): the metric deltas and the
min / mean cosine between the two models' vectors of the same texts. :data:`TOLERANCE` is how much
an int8 variant may lose against its exact tag.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from embedserve.engine.base import Encoder
from embedserve.eval.data import spearman
from embedserve.eval.formats import RetrievalData
from embedserve.eval.metrics import evaluate_run, top_k
from embedserve.eval.tasks import EvalData, StsData, metrics_of, primary_metric
from embedserve.vectors import l2_normalize

__all__ = [
    "PUBLISHED",
    "TOLERANCE",
    "Comparison",
    "EvalData",
    "ModelQuality",
    "compare",
    "encode_unit",
    "evaluate",
    "retrieval_scores",
    "stsb_spearman",
    "vector_agreement",
]

# how much a quantized variant may lose against its exact tag, per primary metric (others: 0.005)
TOLERANCE = {"stsb": 0.003, "cisi": 0.005}
DEFAULT_TOLERANCE = 0.005
# sentence-transformers fp32 numbers from the data README, by upstream repository
PUBLISHED = {"sentence-transformers/all-MiniLM-L6-v2": {"stsb": 0.8672, "cisi": 0.4193}}

Progress = Callable[[int], None]  # called with the number of texts just encoded
_CHUNK = 256  # texts per encode() call: progress granularity, and bounded memory


def encode_unit(
    encoder: Encoder, texts: Sequence[str], progress: Progress | None = None
) -> np.ndarray:
    """Unit-length float32 vectors (n, d), encoded in chunks so ``progress`` can follow."""
    parts = []
    for start in range(0, len(texts), _CHUNK):
        chunk = list(texts[start : start + _CHUNK])
        parts.append(np.asarray(encoder.encode(chunk), dtype=np.float32).reshape(len(chunk), -1))
        if progress is not None:
            progress(len(chunk))
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return l2_normalize(np.concatenate(parts))


def stsb_spearman(pairs: Sequence[tuple[str, str, float]], vectors: dict[str, np.ndarray]) -> float:
    """Spearman of cosine(s1, s2) vs the gold score; ``vectors``: sentence -> unit vector."""
    a = np.stack([vectors[s1] for s1, _, _ in pairs])
    b = np.stack([vectors[s2] for _, s2, _ in pairs])
    return spearman((a * b).sum(1), [gold for _, _, gold in pairs])


def retrieval_scores(
    task: RetrievalData, doc_vectors: np.ndarray, query_vectors: np.ndarray
) -> dict[str, float]:
    """The task's metrics: rows of ``doc_vectors`` follow ``task.corpus``, of ``query_vectors``
    the judged queries; every document is scored by cosine."""
    k = max(int(m.split("@")[1]) for m in metrics_of(task))
    run = top_k(query_vectors @ doc_vectors.T, task.judged_queries, list(task.corpus), k)
    return evaluate_run(run, task.qrels, metrics_of(task))


@dataclass
class ModelQuality:
    """One encoder's results. ``scores``: task -> primary metric (Spearman, nDCG@10);
    ``metrics``: task -> every metric; ``vectors``: rows follow ``EvalData.texts`` (unchunked)."""

    name: str
    scores: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    seconds: float = 0.0
    task_seconds: dict[str, float] = field(default_factory=dict)


def evaluate(
    name: str,
    encoder: Encoder,
    data: EvalData,
    progress: Progress | None = None,
    *,
    chunked: bool = False,
) -> ModelQuality:
    """Scores of ``encoder`` on every task ``data`` holds."""
    t0 = time.perf_counter()
    out = ModelQuality(name)
    for task in data.tasks:
        t_task = time.perf_counter()
        if isinstance(task, StsData):
            texts = data.texts(task)
            vecs = encode_unit(encoder, texts, progress)
            out.vectors[task.name] = vecs
            out.metrics[task.name] = {"spearman": stsb_spearman(task.pairs, dict(zip(texts, vecs)))}
        elif chunked:
            from embedserve.eval.chunked import collection_scores

            out.metrics[task.name] = collection_scores(task, encoder, progress)
        else:
            vecs = encode_unit(encoder, data.texts(task), progress)
            out.vectors[task.name] = vecs
            n_docs = len(task.corpus)
            out.metrics[task.name] = retrieval_scores(task, vecs[:n_docs], vecs[n_docs:])
        out.scores[task.name] = out.metrics[task.name][primary_metric(task)]
        out.task_seconds[task.name] = time.perf_counter() - t_task
    out.seconds = time.perf_counter() - t0
    return out


def vector_agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(min, mean) row-wise cosine between two matrices of vectors of the same texts."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    if len(a) == 0:
        return float("nan"), float("nan")
    cos = (l2_normalize(a.astype(np.float32)) * l2_normalize(b.astype(np.float32))).sum(1)
    return float(cos.min()), float(cos.mean())


@dataclass(frozen=True)
class Comparison:
    name: str
    baseline: str
    deltas: dict[str, float]  # task -> primary metric, this - baseline
    cosine_min: float  # over every text both models encoded
    cosine_mean: float
    metric_deltas: dict[str, dict[str, float]] = field(default_factory=dict)
    speed: float | None = None  # baseline seconds / this model's seconds (> 1: faster)

    def within(self, tolerance: dict[str, float] = TOLERANCE) -> dict[str, bool]:
        """Per task: did this model lose no more than ``tolerance`` against the baseline?"""
        return {t: d >= -tolerance.get(t, DEFAULT_TOLERANCE) for t, d in self.deltas.items()}


def compare(model: ModelQuality, baseline: ModelQuality) -> Comparison:
    """Deltas of ``model`` vs ``baseline`` and the agreement of their vectors (same dimensions)."""
    deltas = {t: model.scores[t] - baseline.scores[t] for t in model.scores if t in baseline.scores}
    metric_deltas = {
        t: {m: v - baseline.metrics[t][m] for m, v in ms.items() if m in baseline.metrics[t]}
        for t, ms in model.metrics.items()
        if t in baseline.metrics
    }
    common = [t for t in model.vectors if t in baseline.vectors]
    lo, mean = float("nan"), float("nan")
    if common and all(model.vectors[t].shape == baseline.vectors[t].shape for t in common):
        a = np.concatenate([model.vectors[t] for t in common])
        b = np.concatenate([baseline.vectors[t] for t in common])
        lo, mean = vector_agreement(a, b)
    speed = baseline.seconds / model.seconds if model.seconds > 0 else None
    return Comparison(model.name, baseline.name, deltas, lo, mean, metric_deltas, speed)
