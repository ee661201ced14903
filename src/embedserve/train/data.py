"""Training examples for each loss, read from the user's files, and their content hash.

* ``cosine``: scored pairs from an STS CSV/TSV (:func:`embedserve.eval.formats.load_sts`); scores
  are scaled to 0..1 (a file whose scores reach above 1 is read as the 0..5 STS scale).
* ``mnrl``: (anchor, positive) pairs from CSV/TSV/JSONL (:func:`~embedserve.eval.formats.load_pairs`),
  or from a BEIR / SMART folder: one pair per judged relevant (query, document).

The data hash is the sha256 of the examples themselves (tab-separated, one per line), so the same
data in another file format hashes the same, and a changed row changes it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from embedserve.errors import InputFileError, InvalidInput
from embedserve.eval.formats import load_pairs, load_retrieval, load_sts

__all__ = ["LOSSES", "TrainData", "load_train_data"]

LOSSES = ("cosine", "mnrl")


@dataclass(frozen=True)
class TrainData:
    loss: str
    texts: list[tuple[str, str]]
    labels: list[float] | None  # cosine: 0..1 targets; mnrl: None (in-batch negatives)
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def sha256(self) -> str:
        h = hashlib.sha256(self.loss.encode())
        for i, (a, b) in enumerate(self.texts):
            label = "" if self.labels is None else repr(self.labels[i])
            h.update(f"\n{a}\t{b}\t{label}".encode())
        return h.hexdigest()


def _scaled(path: Path, scores: list[float]) -> list[float]:
    lo, hi = min(scores), max(scores)
    if lo < 0:
        raise InputFileError(f"{path}: scores must be 0..1 or 0..5, found {lo}")
    if hi <= 1.0:
        return scores
    if hi <= 5.0:
        return [s / 5.0 for s in scores]
    raise InputFileError(f"{path}: scores must be 0..1 or 0..5, found {hi}")


def load_train_data(spec: str | Path, loss: str) -> TrainData:
    """The examples of ``spec`` (a file, or a BEIR/SMART folder for ``mnrl``) for ``loss``."""
    if loss not in LOSSES:
        raise InvalidInput(f"unknown loss {loss!r}; choose one of: {', '.join(LOSSES)}")
    path = Path(str(spec)).expanduser()
    is_dir = path.is_dir() or (not path.exists() and ":" in str(spec))
    if loss == "cosine":
        if is_dir:
            raise InvalidInput(
                f"{spec}: --loss cosine trains on scored pairs (an STS CSV/TSV file); "
                "use --loss mnrl for a retrieval folder"
            )
        rows = load_sts(path)
        labels = _scaled(path, [s for _, _, s in rows])
        return TrainData(loss, [(a, b) for a, b, _ in rows], labels, str(path))
    if is_dir:
        data = load_retrieval(spec)
        pairs = [
            (data.queries[q], data.corpus[d])
            for q in data.judged_queries
            for d, rel in data.qrels[q].items()
            if rel > 0 and d in data.corpus
        ]
        if not pairs:
            raise InputFileError(f"{spec}: no judged relevant (query, document) pair")
        return TrainData(loss, pairs, None, str(spec))
    return TrainData(loss, load_pairs(path), None, str(path))
