"""``embed`` and ``similarity`` through ``main`` with a fake engine, plus the real model and a subprocess."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clikit import error_line, run

from embedserve.cli import main
from embedserve.engine.fake import FakeEngine


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, fake_engine: FakeEngine, home: Path) -> FakeEngine:
    from embedserve.embedder import Embedder

    opened: list[str] = []

    def open_embedder(model: str, settings: Any) -> Embedder:
        opened.append(model)
        return Embedder.from_engine(fake_engine)

    monkeypatch.setattr("embedserve.cli.embed.open_embedder", open_embedder)
    fake_engine.opened = opened  # type: ignore[attr-defined]
    return fake_engine




def test_embed_arguments_as_jsonl(fake: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "embed", "-m", "tiny", "the sky is blue", "grass is green")
    assert code == 0
    assert fake.opened == ["tiny"]  # type: ignore[attr-defined]
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in rows] == ["the sky is blue", "grass is green"]
    vecs = np.array([r["embedding"] for r in rows])
    assert vecs.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    tokens = sum(len(ids) for ids in fake.tokenize(["the sky is blue", "grass is green"]))
    assert err.startswith(f"embedded 2 texts ({tokens} tokens, 32 dimensions) in ")
    assert err.rstrip().endswith("with fake:latest")


def test_embed_json_and_dimensions(fake: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "embed", "--format", "json", "--dimensions", "8", "a", "b", "c")
    assert code == 0
    body = json.loads(out)
    assert body["model"] == "fake:latest" and body["dimensions"] == 8
    vecs = np.array(body["embeddings"])
    assert vecs.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)


def test_embed_text_file_to_npy(
    fake: FakeEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "texts.txt"
    src.write_text("first line\n\nsecond line\r\nthird line", encoding="utf-8")
    out_path = tmp_path / "vecs.npy"
    code, out, err = run(
        capsys, "embed", "--input", str(src), "--format", "npy", "--output", str(out_path)
    )
    assert code == 0 and out == ""
    vecs = np.load(out_path)
    assert vecs.shape == (3, 32) and vecs.dtype == np.float32
    code, out, _ = run(
        capsys, "embed", "first line", "second line", "third line", "--format", "json"
    )
    np.testing.assert_allclose(vecs, np.array(json.loads(out)["embeddings"]), rtol=1e-6)
    assert "embedded 3 texts" in err


def test_embed_jsonl_keeps_fields(
    fake: FakeEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "docs.data"  # no .jsonl suffix: detected by the leading '{'
    src.write_text(
        '{"id": 7, "text": "hello"}\n{"id": 8, "text": "world", "tag": "x"}\n', encoding="utf-8"
    )
    out_path = tmp_path / "out.jsonl"
    code, out, _ = run(capsys, "embed", "-i", str(src), "-o", str(out_path))
    assert code == 0 and out == ""
    rows = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert [(r["id"], r["text"]) for r in rows] == [(7, "hello"), (8, "world")]
    assert rows[1]["tag"] == "x" and len(rows[1]["embedding"]) == 32


def test_embed_reads_stdin(
    fake: FakeEngine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"one\ntwo\n"), encoding="utf-8"))
    code, out, _err = run(capsys, "embed")
    assert code == 0
    assert [json.loads(x)["text"] for x in out.splitlines()] == ["one", "two"]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("setup", "argv", "expected"),
    [
        (
            lambda d: (d / "bad.txt").write_bytes(b"fine\n\xff\xfe broken\n"),
            ["--input", "{d}/bad.txt"],
            "Error: {d}/bad.txt: line 2 is not valid UTF-8",
        ),
        (lambda d: None, ["--input", "{d}/missing.txt"], "Error: {d}/missing.txt: no such file"),
        (
            lambda d: (d / "x.jsonl").write_text('{"text": "a"}\n{"txt": "b"}\n'),
            ["--input", "{d}/x.jsonl"],
            'Error: {d}/x.jsonl: line 2 has no string "text" field',
        ),
        (
            lambda d: (d / "y.jsonl").write_text('{"text": "a"}\n{oops\n'),
            ["--input", "{d}/y.jsonl"],
            "Error: {d}/y.jsonl: line 2 is not valid JSON",
        ),
        (
            lambda d: (d / "e.txt").write_text("\n\n"),
            ["--input", "{d}/e.txt"],
            "Error: {d}/e.txt: no texts to embed",
        ),
        (
            lambda d: (d / "t.txt").write_text("short\nok\n" + "word " * 100 + "\n"),
            ["--no-truncate", "--input", "{d}/t.txt"],
            "Error: {d}/t.txt:3: text is 102 tokens long, over the model's limit of 64 (drop --no-truncate to cut it)",
        ),
        (
            lambda d: None,
            ["--format", "npy", "hello"],
            "Error: --format npy writes binary data: give --output FILE",
        ),
        (
            lambda d: None,
            ["--dimensions", "0", "hello"],
            "Error: --dimensions must be at least 1, got 0",
        ),
        (
            lambda d: (d / "a.txt").write_text("x\n"),
            ["hello", "--input", "{d}/a.txt"],
            "Error: give TEXT arguments or --input FILE, not both",
        ),
        (
            lambda d: None,
            [],
            "Error: no input: give TEXT arguments, --input FILE, or pipe texts on stdin",
        ),
        (
            lambda d: None,
            ["--format", "xml", "hi"],
            "Error: argument -f/--format: invalid choice: 'xml'",
        ),
    ],
)
def test_embed_user_errors(
    fake: FakeEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    setup: Any,
    argv: list[str],
    expected: str,
) -> None:
    monkeypatch.setattr(sys, "stdin", _Tty())
    setup(tmp_path)
    try:
        code = main(["embed", *[a.replace("{d}", str(tmp_path)) for a in argv]])
    except SystemExit as exc:  # argparse errors
        code = exc.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert code == 1
    assert error_line(err).startswith(expected.replace("{d}", str(tmp_path)))


def test_similarity_prints_a_labelled_matrix(
    fake: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "similarity", "the dog runs", "the dog runs fast", "cold night")
    assert code == 0
    assert "cosine similarity (fake:latest)" in out
    rows = [ln for ln in out.splitlines() if ln.startswith("│")]
    assert len(rows) == 3
    assert "1. the dog runs" in rows[0] and "3. cold night" in rows[2]
    values = [[float(x) for x in ln.split("│")[2:-1]] for ln in rows]
    assert [values[i][i] for i in range(3)] == [1.0, 1.0, 1.0]
    assert values[0][1] == values[1][0] > values[0][2]


def test_similarity_needs_two_texts(fake: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "similarity", "alone")
    assert code == 1 and error_line(err) == "Error: similarity needs at least two texts"


@pytest.mark.slow
def test_embed_with_the_real_model(
    real_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EMBEDSERVE_HOME", str(real_home))
    monkeypatch.setenv("EMBEDSERVE_OFFLINE", "1")
    code, out, err = run(
        capsys,
        "embed",
        "-m",
        "all-minilm",
        "--format",
        "json",
        "A man is playing a guitar.",
        "Someone plays an instrument.",
        "The stock market fell.",
    )
    assert code == 0, err
    body = json.loads(out)
    vecs = np.array(body["embeddings"])
    assert body["model"] == "all-minilm:latest" and vecs.shape == (3, 384)
    sims = vecs @ vecs.T
    assert sims[0, 1] > sims[0, 2] + 0.2
    assert "embedded 3 texts" in err


@pytest.mark.slow
def test_offline_missing_model_is_one_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "embed", "-m", "all-minilm", "hello")
    assert code == 1
    assert (
        error_line(err)
        == "Error: model 'all-minilm:latest' is not installed; run: embedserve pull all-minilm:latest"
    )


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("embedserve")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "embedserve"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["embed", "--input", "{d}/bad.txt"], "Error: {d}/bad.txt: line 1 is not valid UTF-8"),
        (["show", "nosuch"], "Error: model 'nosuch:latest' not found"),
        (
            ["embed", "-m", "all-minilm", "hi"],
            "Error: model 'all-minilm:latest' is not installed; run: embedserve pull all-minilm:latest",
        ),
    ],
)
def test_subprocess_errors_have_no_traceback(
    tmp_path: Path, argv: list[str], expected: str
) -> None:
    (tmp_path / "bad.txt").write_bytes(b"\xc3\x28 invalid\n")
    env = dict(os.environ, EMBEDSERVE_HOME=str(tmp_path / "home"), EMBEDSERVE_OFFLINE="1")
    proc = subprocess.run(
        [*_cli(), *[a.replace("{d}", str(tmp_path)) for a in argv]],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        expected.replace("{d}", str(tmp_path))
    ] or proc.stderr.strip().startswith(expected.replace("{d}", str(tmp_path)))
    assert len(proc.stderr.strip().splitlines()) == 1
