"""Loaders for the default evaluation data (STS-B dev, CISI) and the two metrics scored on it.

The data ships inside the package (``eval/datasets/``, xz-compressed, licences in its README), so
``embedserve eval`` works offline after ``pip install``; ``--data-dir`` points at a folder of the
same layout, plain or ``.xz``. Dependency-free apart from numpy. The conventions:

* STS-B: CSV without a header, ``sentence1,sentence2,score`` (score 0..5, quoted where needed).
* CISI (SMART format): document text = title + " " + abstract with whitespace collapsed; query
  text = the ``.W`` field; ``CISI.REL`` holds binary judgements for 76 of the 112 queries.

Ids are strings (as in sentence-transformers' ``InformationRetrievalEvaluator``), e.g. ``"1"``.
"""

from __future__ import annotations

import csv
import lzma
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from embedserve.errors import InputFileError

__all__ = [
    "default_data_dir",
    "load_cisi",
    "load_stsb",
    "mean_ndcg_at_k",
    "ndcg_at_k",
    "rankdata",
    "spearman",
]

_FIELD = re.compile(r"^\.([A-Z])(?:\s+(.*))?$")
_WS = re.compile(r"\s+")


PACKAGED_DATA = Path(__file__).resolve().parent / "datasets"


def default_data_dir(override: Path | None = None) -> Path:
    """The evaluation data folder: ``override`` when given, else the one shipped in the package
    (``stsb/stsb-en-dev.csv.xz``, ``cisi/CISI.{ALL,QRY,REL}.xz``)."""
    path = PACKAGED_DATA if override is None else Path(override).expanduser()
    if not path.is_dir():
        raise InputFileError(f"evaluation data folder not found: {path}")
    return path


def _read_text(path: Path) -> str:
    """``path``'s text, or its ``path.xz`` sibling's decompressed (the packaged layout)."""
    packed = path.with_name(path.name + ".xz")
    try:
        if not path.exists() and packed.is_file():
            raw = lzma.decompress(packed.read_bytes())
            path = packed
        else:
            raw = path.read_bytes()
        return raw.decode("utf-8")
    except FileNotFoundError:
        raise InputFileError(f"missing evaluation data file: {path}") from None
    except IsADirectoryError:
        raise InputFileError(f"{path} is a folder, expected a file") from None
    except lzma.LZMAError as exc:
        raise InputFileError(f"{path} is not valid xz data: {exc}") from None
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path} is not UTF-8: {exc.reason}") from None


def load_stsb(split: str = "dev", data_dir: Path | None = None) -> list[tuple[str, str, float]]:
    """STS Benchmark pairs ``(sentence1, sentence2, gold score 0..5)`` of one split (dev, train)."""
    path = default_data_dir(data_dir) / "stsb" / f"stsb-en-{split}.csv"
    pairs: list[tuple[str, str, float]] = []
    rows = csv.reader(_read_text(path).splitlines())
    for lineno, row in enumerate(rows, 1):
        if not row:
            continue
        if len(row) != 3:
            raise InputFileError(f"{path}:{lineno}: expected 3 columns, got {len(row)}")
        try:
            score = float(row[2])
        except ValueError:
            raise InputFileError(f"{path}:{lineno}: bad score {row[2]!r}") from None
        pairs.append((row[0], row[1], score))
    return pairs


def _smart_records(text: str) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """Yield ``(id, {field letter: [lines]})`` per ``.I`` record; lines before the first ``.I``
    (CISI.ALL starts with a stray ``.X``) are skipped."""
    rec_id: str | None = None
    fields: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        m = _FIELD.match(line.rstrip())
        if m:
            letter, rest = m.group(1), (m.group(2) or "").strip()
            if letter == "I":
                if rec_id is not None:
                    yield rec_id, fields
                rec_id, fields, current = rest, {}, None
                continue
            if rec_id is None:
                current = None
                continue
            current = fields.setdefault(letter, [])
            if rest:
                current.append(rest)
            continue
        if current is not None:
            current.append(line)
    if rec_id is not None:
        yield rec_id, fields


def _collapse(parts: Iterable[str]) -> str:
    return _WS.sub(" ", " ".join(parts)).strip()


def load_cisi(
    data_dir: Path | None = None,
) -> tuple[dict[str, str], dict[str, str], dict[str, set[str]]]:
    """CISI as ``(docs, queries, qrels)``.

    ``docs``: 1,460 id -> title + " " + abstract; ``queries``: 112 id -> ``.W`` text;
    ``qrels``: query id -> relevant doc ids, for the 76 judged queries only.
    """
    folder = default_data_dir(data_dir) / "cisi"
    docs = {
        i: _collapse([_collapse(f.get("T", [])), _collapse(f.get("W", []))])
        for i, f in _smart_records(_read_text(folder / "CISI.ALL"))
    }
    queries = {
        i: _collapse(f.get("W", [])) for i, f in _smart_records(_read_text(folder / "CISI.QRY"))
    }
    qrels: dict[str, set[str]] = {}
    rel_path = folder / "CISI.REL"
    for lineno, line in enumerate(_read_text(rel_path).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise InputFileError(f"{rel_path}:{lineno}: expected 'query_id doc_id ...'")
        qrels.setdefault(parts[0], set()).add(parts[1])
    return docs, queries, qrels


def ndcg_at_k(ranked: Sequence[str], relevant: set[str] | frozenset[str], k: int = 10) -> float:
    """Binary-relevance nDCG@k of one ranking (log2 discount, ideal = all relevant first).

    A query with no relevant documents scores 0.
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal if ideal > 0 else 0.0


def mean_ndcg_at_k(
    rankings: dict[str, Sequence[str]], qrels: dict[str, set[str]], k: int = 10
) -> float:
    """Mean nDCG@k over the judged queries (``qrels`` keys); an unranked query scores 0."""
    if not qrels:
        raise ValueError("no judged queries")
    return float(np.mean([ndcg_at_k(rankings.get(q, ()), rel, k) for q, rel in qrels.items()]))


def rankdata(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """1-based ranks with ties given the average of the ranks they span (scipy's ``average``)."""
    a = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    # start index of each run of equal values
    starts = np.flatnonzero(np.r_[True, sorted_a[1:] != sorted_a[:-1]])
    ends = np.r_[starts[1:], len(a)]
    avg = (starts + ends + 1) / 2.0  # mean of 1-based ranks starts+1 .. ends
    ranks = np.empty(len(a), dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation (Pearson of average-tie ranks); NaN if either side is constant."""
    rx, ry = rankdata(x), rankdata(y)
    if rx.shape != ry.shape:
        raise ValueError(f"length mismatch: {rx.shape[0]} vs {ry.shape[0]}")
    if len(rx) < 2:
        return float("nan")
    rx -= rx.mean()
    ry -= ry.mean()
    denom = math.sqrt(float((rx * rx).sum()) * float((ry * ry).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")
