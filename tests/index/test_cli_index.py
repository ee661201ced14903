from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedserve.cli import main

from .llm_stub import llm_stub


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_factory: dict) -> Path:
    monkeypatch.setenv("EMBEDSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EMBEDSERVE_LLM_URL", raising=False)
    monkeypatch.delenv("EMBEDSERVE_LLM_MODEL", raising=False)
    return tmp_path


def write_inputs(d: Path) -> list[str]:
    (d / "paris.txt").write_text("the eiffel tower stands in paris france")
    (d / "notes.md").write_text("# Rome\nthe colosseum stands in rome italy")
    (d / "more.jsonl").write_text(
        json.dumps({"id": "banana", "text": "bananas are yellow fruit", "metadata": {"kind": "fruit"}}) + "\n\n"
        + json.dumps({"id": "apple", "text": "apples are red or green fruit", "metadata": {"kind": "fruit"}}) + "\n"
    )
    return [str(d / "paris.txt"), str(d / "notes.md"), str(d / "more.jsonl")]


def test_add_query_list_delete_rm(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = write_inputs(home)
    assert main(["index", "add", "kb", *files, "--model", "fake"]) == 0
    out = capsys.readouterr().out
    assert "4 documents (4 added, 0 updated, 0 skipped unchanged), 4 chunks" in out
    assert main(["index", "add", "kb", *files]) == 0
    assert "4 skipped unchanged), 0 chunks" in capsys.readouterr().out

    assert main(["index", "query", "kb", "eiffel tower paris", "-k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["id"] == files[0] and hits[0]["metadata"] == {"path": files[0]}
    assert hits[0]["chunk"] == {"index": 0, "start": 0, "end": len("the eiffel tower stands in paris france")}
    assert main(["index", "query", "kb", "fruit", "--where", '{"kind": "fruit"}']) == 0
    out = capsys.readouterr().out
    assert "banana" in out and "apple" in out and "paris" not in out

    assert main(["index", "list"]) == 0
    out = capsys.readouterr().out
    assert "kb" in out and "fake:latest" in out

    assert main(["index", "delete", "kb", "--ids", "banana", "apple"]) == 0
    assert "deleted 2 documents" in capsys.readouterr().out
    assert main(["index", "rm", "kb"]) == 0
    assert main(["index", "list"]) == 0
    assert "no collections" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["index", "query", "nope", "x"], "collection 'nope' not found"),
        (["index", "rm", "nope"], "not found"),
        (["index", "add", "kb", "missing.txt"], "no such file"),
        (["index", "query", "kb", "x", "--where", "{bad"], "bad filter: not valid JSON"),
        (["index", "query", "kb", "x", "--where", '{"a": {"$xx": 1}}'], "unknown operator '\\$xx'"),
    ],
)
def test_user_errors_are_one_line(home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], msg: str) -> None:
    if argv[2] == "kb":
        write_inputs(home)
        assert main(["index", "add", "kb", str(home / "paris.txt")]) == 0
        capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("Error: ")
    assert __import__("re").search(msg, err)


def test_bad_input_files(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (home / "bad.jsonl").write_text('{"text": "ok"}\n[1]\n')
    (home / "badtext.jsonl").write_text('{"text": "ok"}\n\n{"text": 3}\n')
    (home / "badvec.jsonl").write_text('{"text": "ok", "embedding": [0.1, "x"]}\n')
    (home / "bin.txt").write_bytes(b"\xff\xfe\x00")
    (home / "x.pdf").write_text("x")
    (home / "huge.jsonl").write_text('{"text": "ok"}\n{"text": "n", "n": ' + "9" * 5000 + "}\n")
    (home / "broken.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    for name, msg in [("huge.jsonl", "huge.jsonl:2: not valid JSON (Exceeds the limit"),
                      ("broken.jsonl", "broken.jsonl:2: not valid JSON (Expecting value)"),
                      ("bad.jsonl", "bad.jsonl:2: expected an object"), ("badtext.jsonl", "badtext.jsonl:3: 'text' must"),
                      ("badvec.jsonl", "badvec.jsonl:1: 'embedding' must be a non-empty list of finite numbers"), ("bin.txt", "line 1 is not valid UTF-8"), ("x.pdf", "unsupported")]:
        assert main(["index", "add", "kb", str(home / name)]) == 1
        assert msg in capsys.readouterr().err


def test_ask_without_llm_shows_context_and_prompt(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["index", "add", "kb", *write_inputs(home)])
    capsys.readouterr()
    assert main(["ask", "kb", "where is the eiffel tower?", "-k", "2"]) == 0
    cap = capsys.readouterr()
    assert "No LLM configured" in cap.err
    assert "# Retrieved context" in cap.out and "# Prompt" in cap.out and "Question: where is the eiffel tower?" in cap.out


def test_ask_streams_from_upstream(home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    main(["index", "add", "kb", *write_inputs(home)])
    capsys.readouterr()
    with llm_stub() as stub:
        assert main(["ask", "kb", "eiffel tower", "--llm", stub.url, "--llm-model", "tiny"]) == 0
        out = capsys.readouterr().out
        assert "The answer is in [a#0]." in out and "Sources: " in out
        monkeypatch.setenv("EMBEDSERVE_LLM_URL", stub.url)
        monkeypatch.setenv("EMBEDSERVE_LLM_MODEL", "tiny2")
        assert main(["ask", "kb", "eiffel tower"]) == 0
        assert stub.requests[-1][1]["model"] == "tiny2"
        stub.mode = "status500"
        assert main(["ask", "kb", "eiffel tower"]) == 1
        assert "HTTP 500" in capsys.readouterr().err


def test_empty_records_in_a_jsonl_are_skipped_and_named(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Like a public test collection whose JSONL failed whole at its line 470 (two empty records)."""
    lines = [json.dumps({"id": str(i), "text": f"document number {i} about topic {i % 7}"}) for i in range(1, 601)]
    lines[469] = json.dumps({"id": "470", "text": "", "metadata": {"title": "no abstract"}})
    lines[519] = json.dumps({"text": "   "})  # no id either: named by file and line
    (home / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["index", "add", "kb", str(home / "corpus.jsonl"), "--model", "fake"]) == 0
    out = capsys.readouterr().out
    assert "600 documents (598 added" in out and "2 empty skipped (ids: 470, corpus.jsonl:520)" in out
    assert main(["index", "info", "kb"]) == 0
    assert '"documents": 598' in capsys.readouterr().out


def test_jsonl_with_own_embeddings(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from .conftest import make_encoder

    vec = make_encoder(name="fake:latest").encode(["deep sea creatures"])[0]
    (home / "v.jsonl").write_text(
        json.dumps({"id": "v", "text": "a document with a vector", "embedding": [float(x) for x in vec]}) + "\n"
        + json.dumps({"id": "t", "text": "an ordinary document"}) + "\n"
    )
    assert main(["index", "add", "kb", str(home / "v.jsonl"), "--model", "fake"]) == 0
    assert "2 added" in capsys.readouterr().out
    assert main(["index", "query", "kb", "deep sea creatures", "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == "v"
    (home / "w.jsonl").write_text(json.dumps({"id": "w", "text": "x", "embedding": [0.5, 0.5]}) + "\n")
    assert main(["index", "add", "kb", str(home / "w.jsonl")]) == 1
    assert "'embedding' has 2 values; this collection's vectors have 32" in capsys.readouterr().err
