"""Users' own evaluation (and training) data in the standard formats.

* **STS pairs**: CSV or TSV (``.tsv``/``.tab`` or a tab in the first line), ``sentence1,
  sentence2, score``, with or without a header. With a header, the columns are found by name
  (``sentence1``/``sentence2``/``score``, also ``text1``/``text2``, ``label``, ``similarity``);
  without one, the first three columns are used.
* **Pairs** (for fine-tuning with MNRL): the same CSV/TSV with two columns (``anchor,positive``
  or any header), or JSON lines with ``anchor``/``positive`` (also ``query``/``positive``, ``text1``/
  ``text2``) or a two-element list per line.
* **BEIR folder**: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
  ``text``), ``qrels/<split>.tsv`` (``query-id, corpus-id, score``, header, graded). A document's
  text is ``title + " " + text`` (BEIR's convention) when it has a title.
* **SMART collection** (CISI, CACM, MED, CRAN...): a folder with one ``*.ALL`` (documents),
  ``*.QRY`` (queries), ``*.REL`` (``query doc [...]``, binary) file; a ``qrels`` file in TREC
  form (``query iter doc rel``) instead of ``*.REL`` gives graded judgements.

Every problem is an :class:`InputFileError` naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedserve.errors import InputFileError

__all__ = [
    "RetrievalData",
    "load_beir",
    "load_pairs",
    "load_retrieval",
    "load_smart",
    "load_sts",
]

_S1 = ("sentence1", "sentence_1", "text1", "text_1", "s1", "sentence_a")
_S2 = ("sentence2", "sentence_2", "text2", "text_2", "s2", "sentence_b")
_SCORE = ("score", "label", "similarity", "similarity_score", "gold", "relatedness_score")
_ANCHOR = ("anchor", "query", "question", "sentence1", "text1")
_POSITIVE = ("positive", "pos", "answer", "document", "passage", "sentence2", "text2")


@dataclass(frozen=True)
class RetrievalData:
    """A retrieval task: documents, queries, graded judgements (query -> doc -> rel)."""

    name: str
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    @property
    def judged_queries(self) -> list[str]:
        """Queries with at least one judgement that also have a text, in qrels order."""
        return [q for q in self.qrels if q in self.queries]


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{path} is a folder, expected a file") from None
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path} is not UTF-8: {exc.reason}") from None


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    text = _read(path)
    first = text.split("\n", 1)[0]
    tab = path.suffix.lower() in (".tsv", ".tab") or "\t" in first
    reader = csv.reader(io.StringIO(text), delimiter="\t" if tab else ",")
    try:
        return [(reader.line_num, row) for row in reader if row and any(c.strip() for c in row)]
    except csv.Error as exc:
        raise InputFileError(f"{path}:{reader.line_num}: {exc}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _column(header: list[str], names: tuple[str, ...], fallback: int) -> int:
    lower = [h.strip().lower() for h in header]
    for n in names:
        if n in lower:
            return lower.index(n)
    return fallback


def load_sts(path: Path) -> list[tuple[str, str, float]]:
    """``(sentence1, sentence2, score)`` rows of an STS CSV/TSV, header optional."""
    path = Path(path)
    rows = _rows(path)
    if not rows:
        raise InputFileError(f"{path}: no rows")
    cols = (0, 1, 2)
    if len(rows[0][1]) >= 3 and not _is_number(rows[0][1][2].strip()):
        header = rows.pop(0)[1]
        cols = (_column(header, _S1, 0), _column(header, _S2, 1), _column(header, _SCORE, 2))
    out = []
    for lineno, row in rows:
        if len(row) <= max(cols):
            raise InputFileError(
                f"{path}:{lineno}: expected sentence1, sentence2, score; got {len(row)} column(s)"
            )
        try:
            score = float(row[cols[2]])
        except ValueError:
            raise InputFileError(f"{path}:{lineno}: bad score {row[cols[2]]!r}") from None
        out.append((row[cols[0]], row[cols[1]], score))
    if not out:
        raise InputFileError(f"{path}: a header but no rows")
    return out


def _json_pair(obj: Any) -> tuple[str, str] | None:
    if isinstance(obj, list) and len(obj) >= 2 and all(isinstance(x, str) for x in obj[:2]):
        return obj[0], obj[1]
    if isinstance(obj, dict):
        a = next((obj[k] for k in _ANCHOR if isinstance(obj.get(k), str)), None)
        p = next((obj[k] for k in _POSITIVE if isinstance(obj.get(k), str)), None)
        if a is not None and p is not None:
            return a, p
    return None


def load_pairs(path: Path) -> list[tuple[str, str]]:
    """``(anchor, positive)`` pairs from CSV/TSV (header optional) or JSON lines."""
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        out = []
        for lineno, line in enumerate(_read(path).splitlines(), 1):
            if not line.strip():
                continue
            try:
                pair = _json_pair(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputFileError(f"{path}:{lineno}: not JSON: {exc.msg}") from None
            if pair is None:
                raise InputFileError(
                    f"{path}:{lineno}: expected {{\"anchor\": ..., \"positive\": ...}} "
                    "or [anchor, positive]"
                )
            out.append(pair)
    else:
        rows = _rows(path)
        cols = (0, 1)
        if rows:
            lower = [c.strip().lower() for c in rows[0][1]]
            if any(c in lower for c in _ANCHOR + _POSITIVE):
                header = rows.pop(0)[1]
                cols = (_column(header, _ANCHOR, 0), _column(header, _POSITIVE, 1))
        out = []
        for lineno, row in rows:
            if len(row) <= max(cols):
                raise InputFileError(
                    f"{path}:{lineno}: expected anchor, positive; got {len(row)} column(s)"
                )
            out.append((row[cols[0]], row[cols[1]]))
    if not out:
        raise InputFileError(f"{path}: no pairs")
    return out


# --------------------------------------------------------------------------- BEIR


def _jsonl(path: Path, what: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for lineno, line in enumerate(_read(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"{path}:{lineno}: not JSON: {exc.msg}") from None
        if not isinstance(obj, dict) or "_id" not in obj or not isinstance(obj.get("text"), str):
            raise InputFileError(f"{path}:{lineno}: a {what} needs \"_id\" and \"text\"")
        out[str(obj["_id"])] = obj
    return out


def _qrels_split(folder: Path, split: str | None) -> Path:
    qdir = folder / "qrels"
    if not qdir.is_dir():
        raise InputFileError(f"{folder}: no qrels/ folder (a BEIR folder has qrels/<split>.tsv)")
    splits = sorted(p.stem for p in qdir.glob("*.tsv"))
    if split is None:
        if "test" in splits:
            split = "test"
        elif len(splits) == 1:
            split = splits[0]
        else:
            raise InputFileError(
                f"{qdir}: choose a split ({', '.join(splits) or 'none found'}): DIR:SPLIT"
            )
    path = qdir / f"{split}.tsv"
    if not path.is_file():
        raise InputFileError(f"{path}: no such split; have: {', '.join(splits) or 'none'}")
    return path


def _graded_qrels(path: Path, rows: list[tuple[int, list[str]]], cols: tuple[int, int, int]) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for lineno, row in rows:
        if len(row) <= max(cols):
            raise InputFileError(f"{path}:{lineno}: expected query-id, corpus-id, score")
        try:
            rel = int(float(row[cols[2]]))
        except ValueError:
            raise InputFileError(f"{path}:{lineno}: bad relevance {row[cols[2]]!r}") from None
        qrels.setdefault(row[cols[0]].strip(), {})[row[cols[1]].strip()] = rel
    return qrels


def load_beir(folder: Path, split: str | None = None) -> RetrievalData:
    """A BEIR dataset folder; ``split`` defaults to ``test`` (or the only one there)."""
    folder = Path(folder)
    corpus = {
        i: (f"{d['title']} {d['text']}" if d.get("title") else d["text"]).strip()
        for i, d in _jsonl(folder / "corpus.jsonl", "document").items()
    }
    queries = {i: q["text"] for i, q in _jsonl(folder / "queries.jsonl", "query").items()}
    qpath = _qrels_split(folder, split)
    rows = _rows(qpath)
    if rows and not _is_number(rows[0][1][-1].strip()):
        rows.pop(0)  # the "query-id corpus-id score" header
    qrels = _graded_qrels(qpath, rows, (0, 1, 2))
    _check_retrieval(folder, corpus, queries, qrels)
    return RetrievalData(folder.name, corpus, queries, qrels)


def _check_retrieval(
    where: Path, corpus: dict[str, str], queries: dict[str, str], qrels: dict[str, dict[str, int]]
) -> None:
    if not corpus:
        raise InputFileError(f"{where}: no documents")
    if not any(q in queries for q in qrels):
        raise InputFileError(f"{where}: no judged query has a text in the queries")


# --------------------------------------------------------------------------- SMART


def _one(folder: Path, suffix: str) -> Path | None:
    found = [p for p in folder.iterdir() if p.is_file() and p.name.upper().endswith(suffix)]
    if len(found) > 1:
        names = ", ".join(sorted(p.name for p in found))
        raise InputFileError(f"{folder}: more than one *{suffix} file ({names})")
    return found[0] if found else None


def load_smart(folder: Path) -> RetrievalData:
    """A SMART collection folder (``*.ALL``, ``*.QRY``, and ``*.REL`` or a TREC ``qrels``)."""
    from embedserve.eval.data import _collapse, _smart_records

    folder = Path(folder)
    docs_path, qry_path = _one(folder, ".ALL"), _one(folder, ".QRY")
    if docs_path is None or qry_path is None:
        raise InputFileError(f"{folder}: a SMART collection needs one *.ALL and one *.QRY file")
    corpus = {
        i: _collapse([_collapse(f.get("T", [])), _collapse(f.get("W", []))])
        for i, f in _smart_records(_read(docs_path))
    }
    queries = {i: _collapse(f.get("W", [])) for i, f in _smart_records(_read(qry_path))}
    rel_path = _one(folder, ".REL")
    trec = folder / "qrels"
    if rel_path is not None:  # SMART: "query doc [0 0.0]", binary
        qrels: dict[str, dict[str, int]] = {}
        for lineno, line in enumerate(_read(rel_path).splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise InputFileError(f"{rel_path}:{lineno}: expected 'query_id doc_id ...'")
            qrels.setdefault(parts[0], {})[parts[1]] = 1
    elif trec.is_file():  # TREC: "query iter doc rel", graded
        rows = [(n, line.split()) for n, line in enumerate(_read(trec).splitlines(), 1)]
        qrels = _graded_qrels(trec, [(n, r) for n, r in rows if r], (0, 2, 3))
    else:
        raise InputFileError(f"{folder}: no judgements (*.REL, or a TREC 'qrels' file)")
    _check_retrieval(folder, corpus, queries, qrels)
    return RetrievalData(folder.name, corpus, queries, qrels)


def load_retrieval(spec: str | Path) -> RetrievalData:
    """``DIR`` or ``DIR:SPLIT``: a BEIR folder (it has corpus.jsonl) or a SMART collection."""
    text = str(spec)
    split = None
    folder = Path(text).expanduser()
    if not folder.exists() and ":" in text:
        head, _, split = text.rpartition(":")
        folder = Path(head).expanduser()
    if not folder.is_dir():
        raise InputFileError(f"{folder}: no such folder")
    if (folder / "corpus.jsonl").is_file():
        return load_beir(folder, split)
    return load_smart(folder)
