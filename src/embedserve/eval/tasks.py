"""The tasks one ``eval`` run scores: STS pair sets and retrieval sets, built-in or the user's.

The built-in ``stsb`` (STS-B dev) and ``cisi`` ship in the package (:mod:`embedserve.eval.data`);
``--sts FILE`` and ``--retrieval DIR`` add the user's own (:mod:`embedserve.eval.formats`). Each
task has a name (``stsb``, ``cisi``, or the file's / folder's name), a kind and a primary metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from embedserve.eval.data import load_cisi, load_stsb
from embedserve.eval.formats import RetrievalData, load_retrieval, load_sts
from embedserve.eval.metrics import DEFAULT_METRICS

__all__ = ["BUILTIN", "EvalData", "StsData", "primary_metric", "task_label"]

BUILTIN = ("stsb", "cisi")
STS_METRICS = ("spearman",)
RETRIEVAL_METRICS = DEFAULT_METRICS
_LABELS = {"stsb": "STS-B", "cisi": "CISI"}


@dataclass(frozen=True)
class StsData:
    name: str
    pairs: list[tuple[str, str, float]]


Task = StsData | RetrievalData


def primary_metric(task: Task) -> str:
    return "spearman" if isinstance(task, StsData) else "ndcg@10"


def metrics_of(task: Task) -> tuple[str, ...]:
    return STS_METRICS if isinstance(task, StsData) else RETRIEVAL_METRICS


def task_label(name: str) -> str:
    return _LABELS.get(name, name)


def _unique(name: str, taken: set[str]) -> str:
    out, n = name, 2
    while out in taken:
        out, n = f"{name}-{n}", n + 1
    taken.add(out)
    return out


@dataclass(frozen=True)
class EvalData:
    """The tasks of one run, in order; every model is scored on all of them."""

    tasks: list[Task] = field(default_factory=list)

    @classmethod
    def load(cls, tasks: Sequence[str], data_dir: Path | None = None) -> EvalData:
        """Built-in tasks (``stsb``, ``cisi``) from the packaged data, or ``data_dir``."""
        out: list[Task] = []
        if "stsb" in tasks:
            out.append(StsData("stsb", load_stsb("dev", data_dir)))
        if "cisi" in tasks:
            docs, queries, rel = load_cisi(data_dir)
            qrels = {q: dict.fromkeys(sorted(ds), 1) for q, ds in rel.items()}
            out.append(RetrievalData("cisi", docs, queries, qrels))
        return cls(out)

    @classmethod
    def from_files(
        cls, sts: Sequence[Path] = (), retrieval: Sequence[str | Path] = ()
    ) -> EvalData:
        """The user's STS files and retrieval folders (BEIR or SMART; ``DIR:SPLIT`` for BEIR)."""
        taken: set[str] = set()
        out: list[Task] = []
        for path in sts:
            out.append(StsData(_unique(Path(path).stem, taken), load_sts(Path(path))))
        for spec in retrieval:
            data = load_retrieval(spec)
            out.append(
                RetrievalData(_unique(data.name, taken), data.corpus, data.queries, data.qrels)
            )
        return cls(out)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def texts(self, task: Task) -> list[str]:
        """Every text ``task`` encodes without chunking, in a fixed order."""
        if isinstance(task, StsData):
            return list(dict.fromkeys(s for a, b, _ in task.pairs for s in (a, b)))
        return list(task.corpus.values()) + [task.queries[q] for q in task.judged_queries]

    def size(self) -> int:
        return sum(len(self.texts(t)) for t in self.tasks)
