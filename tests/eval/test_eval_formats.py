"""Users' data formats: STS CSV/TSV with and without header, pairs, BEIR folders, SMART folders,
and the one-line errors for broken files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedserve.errors import InputFileError
from embedserve.eval.formats import load_beir, load_pairs, load_retrieval, load_smart, load_sts


def write_beir(folder: Path, *, split: str = "test", extra_split: str | None = None) -> Path:
    (folder / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "d1", "title": "Cats", "text": "cats purr softly"},
        {"_id": "d2", "title": "", "text": "dogs bark loudly"},
        {"_id": "d3", "text": "fish swim in rivers"},
    ]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus) + "\n")
    queries = [{"_id": "q1", "text": "why do cats purr"}, {"_id": "q2", "text": "loud dogs"}]
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td3\t0\nq2\td2\t1\n"
    (folder / "qrels" / f"{split}.tsv").write_text(qrels)
    if extra_split:
        (folder / "qrels" / f"{extra_split}.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td2\t1\n")
    return folder


def test_sts_csv_without_header(tmp_path: Path) -> None:
    f = tmp_path / "pairs.csv"
    f.write_text('A cat.,"A dog, barking.",1.5\nx,y,4\n')
    assert load_sts(f) == [("A cat.", "A dog, barking.", 1.5), ("x", "y", 4.0)]


def test_sts_tsv_with_header_in_any_column_order(tmp_path: Path) -> None:
    f = tmp_path / "pairs.tsv"
    f.write_text("score\tsentence2\tsentence1\n0.5\tb one\ta one\n1.0\tb two\ta two\n")
    assert load_sts(f) == [("a one", "b one", 0.5), ("a two", "b two", 1.0)]
    g = tmp_path / "plain.txt"  # no .tsv suffix: a tab in the first line decides
    g.write_text("a\tb\t3\n")
    assert load_sts(g) == [("a", "b", 3.0)]


def test_sts_errors_name_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.csv"
    f.write_text("a,b,1\nc,d\n")
    with pytest.raises(InputFileError, match=r"bad.csv:2: expected sentence1, sentence2, score"):
        load_sts(f)
    f.write_text("a,b,1\nc,d,high\n")
    with pytest.raises(InputFileError, match=r"bad.csv:2: bad score 'high'"):
        load_sts(f)
    f.write_text("")
    with pytest.raises(InputFileError, match="no rows"):
        load_sts(f)
    with pytest.raises(InputFileError, match="no such file"):
        load_sts(tmp_path / "missing.csv")
    f.write_bytes(b"\xff\xfe,a,1\n")
    with pytest.raises(InputFileError, match="not UTF-8"):
        load_sts(f)


def test_pairs_from_csv_header_and_jsonl(tmp_path: Path) -> None:
    f = tmp_path / "p.csv"
    f.write_text("anchor,positive\nq one,doc one\nq two,doc two\n")
    assert load_pairs(f) == [("q one", "doc one"), ("q two", "doc two")]
    j = tmp_path / "p.jsonl"
    j.write_text('{"anchor": "a", "positive": "b"}\n\n["c", "d"]\n{"query": "e", "positive": "f"}\n')
    assert load_pairs(j) == [("a", "b"), ("c", "d"), ("e", "f")]
    j.write_text('{"anchor": "a"}\n')
    with pytest.raises(InputFileError, match=r"p.jsonl:1: expected"):
        load_pairs(j)
    j.write_text("{not json\n")
    with pytest.raises(InputFileError, match=r"p.jsonl:1: not JSON"):
        load_pairs(j)


def test_beir_folder_graded_with_title_joined(tmp_path: Path) -> None:
    data = load_beir(write_beir(tmp_path / "mini"))
    assert data.name == "mini"
    assert data.corpus == {
        "d1": "Cats cats purr softly",
        "d2": "dogs bark loudly",
        "d3": "fish swim in rivers",
    }
    assert data.qrels == {"q1": {"d1": 2, "d3": 0}, "q2": {"d2": 1}}
    assert data.judged_queries == ["q1", "q2"]


def test_beir_split_choice(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "b", split="dev", extra_split="train")
    with pytest.raises(InputFileError, match=r"choose a split \(dev, train\)"):
        load_beir(folder)
    assert load_retrieval(f"{folder}:train").qrels == {"q2": {"d2": 1}}
    with pytest.raises(InputFileError, match="no such split; have: dev, train"):
        load_retrieval(f"{folder}:test")


def test_beir_broken_lines(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "b")
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n{"text": "no id"}\n')
    with pytest.raises(InputFileError, match=r"corpus.jsonl:2: a document needs"):
        load_beir(folder)
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\tyes\n")
    with pytest.raises(InputFileError, match=r"test.tsv:2: bad relevance 'yes'"):
        load_beir(folder)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq9\td1\t1\n")
    with pytest.raises(InputFileError, match="no judged query has a text"):
        load_beir(folder)


def test_smart_folder_with_rel_and_with_trec_qrels(tmp_path: Path) -> None:
    folder = tmp_path / "med"
    folder.mkdir()
    (folder / "MED.ALL").write_text(".I 1\n.W\ncorrelation of blood\n.I 2\n.T\nKidney\n.W\nstones\n")
    (folder / "MED.QRY").write_text(".I 1\n.W\nblood\n")
    (folder / "MED.REL").write_text("1 1 0 0.0\n1 2 0 0.0\n")
    data = load_retrieval(folder)
    assert data.corpus == {"1": "correlation of blood", "2": "Kidney stones"}
    assert data.queries == {"1": "blood"}
    assert data.qrels == {"1": {"1": 1, "2": 1}}
    (folder / "MED.REL").unlink()
    (folder / "qrels").write_text("1 0 2 3\n1 0 1 0\n")  # TREC: query iter doc rel
    assert load_smart(folder).qrels == {"1": {"2": 3, "1": 0}}
    (folder / "qrels").unlink()
    with pytest.raises(InputFileError, match="no judgements"):
        load_smart(folder)
    with pytest.raises(InputFileError, match="no such folder"):
        load_retrieval(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputFileError, match=r"needs one \*.ALL and one \*.QRY"):
        load_retrieval(empty)
