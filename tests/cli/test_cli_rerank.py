"""``embedserve rerank -m NAME QUERY DOC...`` on a tiny cross-encoder created from a folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clikit import error_line, run
from tinybert import make_tiny_bert
from tinymodels import make_tiny_cross_encoder

QUERY = "why is the sky blue?"
DOCS = ["a dog runs fast", "the sky is blue because of light", "music"]


@pytest.fixture
def models(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, _, err = run(capsys, "create", "tiny-rerank", "--from",
                       str(make_tiny_cross_encoder(tmp_path / "ce")))
    assert code == 0, err
    code, _, err = run(capsys, "create", "tiny-embed", "--from",
                       str(make_tiny_bert(tmp_path / "emb", layers=1, hidden=16, heads=2,
                                          intermediate=32)))
    assert code == 0, err
    return home


def test_rerank_prints_documents_best_first(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from embedserve.config import load
    from embedserve.reranker import Reranker

    scores = Reranker("tiny-rerank", settings=load()).score(QUERY, DOCS)
    code, out, err = run(capsys, "rerank", "-m", "tiny-rerank", QUERY, *DOCS, "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["index"] for r in rows] == sorted(range(3), key=lambda i: -scores[i])
    assert [r["document"] for r in rows] == [DOCS[r["index"]] for r in rows]
    assert rows[0]["score"] == pytest.approx(float(scores.max()), abs=1e-6)
    code, out, _ = run(capsys, "rerank", "-m", "tiny-rerank", QUERY, *DOCS, "-n", "1")
    assert code == 0 and len(out.splitlines()) == 1 and DOCS[rows[0]["index"]] in out


def test_rerank_reads_documents_from_a_file(models: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(DOCS) + "\n")
    code, out, err = run(capsys, "rerank", "-m", "tiny-rerank", QUERY, "--input", str(path))
    assert code == 0, err
    assert len(out.splitlines()) == 3


@pytest.mark.parametrize(
    "argv,message",
    [
        (("rerank", "-m", "tiny-rerank", QUERY), "Error: no documents: give DOC arguments or --input FILE"),
        (("rerank", "-m", "tiny-embed", QUERY, "x"),
         "Error: model 'tiny-embed:latest' is not a reranker (a cross-encoder or a ColBERT model)"),
        (("rerank", "-m", "tiny-rerank", QUERY, "x", "-n", "0"), "Error: --top-n must be at least 1, got 0"),
        (("rerank", "-m", "nope", QUERY, "x"), "Error: model 'nope:latest' not found"),
        (("rerank", "-m", "tiny-rerank", QUERY, "the sky " * 30, "--no-truncate"),
         "Error: input 0 is 69 tokens long, over the model's limit of 40 (pass truncate=True to cut it)"),
    ],
)
def test_rerank_errors_are_one_line(models: Path, capsys: pytest.CaptureFixture[str],
                                    argv: tuple[str, ...], message: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert error_line(err).startswith(message), err


def test_rerank_needs_a_model(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run(capsys, "rerank", QUERY, "x")
    assert info.value.code == 1
    assert "the following arguments are required: -m/--model" in capsys.readouterr().err


def test_index_multivector_and_ask_rerank(models: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(DOCS)))
    code, _, err = run(capsys, "index", "add", "notes", str(docs), "--model", "tiny-embed",
                       "--multivector", "int8")
    assert code == 0, err
    code, out, err = run(capsys, "index", "query", "notes", QUERY, "--rerank", "maxsim", "--json")
    assert code == 0, err
    hits = json.loads(out)
    assert len(hits) == 3 and hits[0]["score"] >= hits[-1]["score"]
    code, out, err = run(capsys, "ask", "notes", QUERY, "--rerank", "tiny-rerank", "-k", "1")
    assert code == 0, err
    from embedserve.config import load
    from embedserve.reranker import Reranker

    best = int(np.argmax(Reranker("tiny-rerank", settings=load()).score(QUERY, DOCS)))
    context = out.split("# Prompt")[0]
    assert DOCS[best] in context
    code, _, err = run(capsys, "index", "query", "notes", QUERY, "--rerank", "nope")
    assert code == 1 and error_line(err).startswith("Error: model 'nope:latest' not found")
