"""Embedding quality on the shared data: STS-B dev Spearman and CISI nDCG@10, for any encoder.

Pure logic over an :class:`~embedserve.engine.base.Encoder` (anything with
``encode(list[str]) -> ndarray``): the library's ``Embedder``, sentence-transformers behind an
adapter, or a fake. Vectors are L2-normalised here, so cosine = dot whatever the encoder does.

* STS-B: each unique sentence is encoded once; score = cosine(s1, s2); Spearman vs the gold scores.
* CISI: every document (title + " " + abstract, collapsed) and every judged query (``.W``) is
  encoded; all documents are ranked by cosine per query; mean nDCG@10 over the judged queries.

:func:`compare` puts a model beside a baseline (the first model): the metric deltas and the
min / mean cosine between the two models' vectors of the same texts. :data:`TOLERANCE` is how much
an int8 variant may lose against its exact tag.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embedserve.engine.base import Encoder
from embedserve.eval.data import load_cisi, load_stsb, mean_ndcg_at_k, spearman
from embedserve.vectors import l2_normalize

__all__ = [
    "METRICS",
    "PUBLISHED",
    "TOLERANCE",
    "CisiData",
    "Comparison",
    "EvalData",
    "ModelQuality",
    "cisi_ndcg",
    "compare",
    "encode_unit",
    "evaluate",
    "stsb_spearman",
    "vector_agreement",
]

TASKS = ("stsb", "cisi")
METRICS = {"stsb": "STS-B Spearman", "cisi": "CISI nDCG@10"}
# how much a quantized variant may lose against its exact tag, per metric
TOLERANCE = {"stsb": 0.003, "cisi": 0.005}
# sentence-transformers fp32 numbers from the data README, by upstream repository
PUBLISHED = {"sentence-transformers/all-MiniLM-L6-v2": {"stsb": 0.8672, "cisi": 0.4193}}

Progress = Callable[[int], None]  # called with the number of texts just encoded
_CHUNK = 256  # texts per encode() call: progress granularity, and bounded memory


@dataclass(frozen=True)
class CisiData:
    docs: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, set[str]]

    @property
    def judged_queries(self) -> list[str]:
        return [q for q in self.qrels if q in self.queries]


@dataclass(frozen=True)
class EvalData:
    """The texts of each task; ``None`` for a task not asked for."""

    stsb: list[tuple[str, str, float]] | None = None
    cisi: CisiData | None = None

    @classmethod
    def load(cls, tasks: Sequence[str], data_dir: Path | None = None) -> EvalData:
        stsb = load_stsb("dev", data_dir) if "stsb" in tasks else None
        cisi = CisiData(*load_cisi(data_dir)) if "cisi" in tasks else None
        return cls(stsb=stsb, cisi=cisi)

    @property
    def tasks(self) -> list[str]:
        return [t for t in TASKS if getattr(self, t) is not None]

    def texts(self, task: str) -> list[str]:
        """Every text the task encodes, in a fixed order (the rows of that task's vectors)."""
        if task == "stsb" and self.stsb is not None:
            return list(dict.fromkeys(s for a, b, _ in self.stsb for s in (a, b)))
        if task == "cisi" and self.cisi is not None:
            c = self.cisi
            return list(c.docs.values()) + [c.queries[q] for q in c.judged_queries]
        raise ValueError(f"no data for task {task!r}")

    def size(self) -> int:
        return sum(len(self.texts(t)) for t in self.tasks)


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


def cisi_ndcg(
    cisi: CisiData, doc_vectors: np.ndarray, query_vectors: np.ndarray, k: int = 10
) -> float:
    """Mean nDCG@k: rows of ``doc_vectors`` follow ``cisi.docs``, of ``query_vectors`` the judged
    queries; every document is ranked by cosine (ties keep document order)."""
    doc_ids = list(cisi.docs)
    scores = query_vectors @ doc_vectors.T
    rankings: dict[str, Sequence[str]] = {}
    for row, qid in enumerate(cisi.judged_queries):
        top = np.argsort(-scores[row], kind="stable")[:k]
        rankings[qid] = [doc_ids[j] for j in top]
    return mean_ndcg_at_k(rankings, cisi.qrels, k)


@dataclass
class ModelQuality:
    """One encoder's scores, and the vectors they came from (rows follow ``EvalData.texts``)."""

    name: str
    scores: dict[str, float] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    seconds: float = 0.0


def evaluate(
    name: str, encoder: Encoder, data: EvalData, progress: Progress | None = None
) -> ModelQuality:
    """Scores of ``encoder`` on every task ``data`` holds."""
    import time

    t0 = time.perf_counter()
    out = ModelQuality(name)
    if data.stsb is not None:
        texts = data.texts("stsb")
        vecs = encode_unit(encoder, texts, progress)
        out.vectors["stsb"] = vecs
        out.scores["stsb"] = stsb_spearman(data.stsb, dict(zip(texts, vecs)))
    if data.cisi is not None:
        vecs = encode_unit(encoder, data.texts("cisi"), progress)
        out.vectors["cisi"] = vecs
        n_docs = len(data.cisi.docs)
        out.scores["cisi"] = cisi_ndcg(data.cisi, vecs[:n_docs], vecs[n_docs:])
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
    deltas: dict[str, float]  # metric -> this - baseline
    cosine_min: float  # over every text both models encoded
    cosine_mean: float

    def within(self, tolerance: dict[str, float] = TOLERANCE) -> dict[str, bool]:
        """Per metric: did this model lose no more than ``tolerance`` against the baseline?"""
        return {m: d >= -tolerance.get(m, 0.0) for m, d in self.deltas.items()}


def compare(model: ModelQuality, baseline: ModelQuality) -> Comparison:
    """Deltas of ``model`` vs ``baseline`` and the agreement of their vectors (same dimensions)."""
    deltas = {m: model.scores[m] - baseline.scores[m] for m in model.scores if m in baseline.scores}
    common = [t for t in model.vectors if t in baseline.vectors]
    lo, mean = float("nan"), float("nan")
    if common and all(model.vectors[t].shape == baseline.vectors[t].shape for t in common):
        a = np.concatenate([model.vectors[t] for t in common])
        b = np.concatenate([baseline.vectors[t] for t in common])
        lo, mean = vector_agreement(a, b)
    return Comparison(model.name, baseline.name, deltas, lo, mean)
