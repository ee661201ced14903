"""``embed --ray``: a corpus on the two-node cluster's actor pool with the real model; a job
killed halfway and rerun writes the same bytes as an uninterrupted one; bad rows are reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from clikit import error_line, run

WORDS = "the a sky grass blue green why is how many people cats dogs run fast slowly under over".split()


def _texts(n: int) -> list[str]:
    rng = np.random.default_rng(7)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 24)))) for _ in range(n)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("corpus")
    texts = _texts(1600)
    jsonl = root / "docs.jsonl"
    with jsonl.open("w") as f:
        for i, t in enumerate(texts[:1200]):
            f.write(json.dumps({"id": f"doc-{i}", "text": t}) + "\n")
            if i == 500:
                f.write("{broken json\n")  # line 502
                f.write(json.dumps({"id": "no-text", "body": "x"}) + "\n")
                f.write(json.dumps({"id": "blank", "text": "   "}) + "\n")
    lines = root / "lines.txt"
    lines.write_text("".join(t + "\n" for t in texts[1200:]))
    return {"root": root, "inputs": [str(jsonl), str(lines)], "texts": texts}


@pytest.fixture
def env(real_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EMBEDSERVE_HOME", str(real_home))
    monkeypatch.setenv("EMBEDSERVE_OFFLINE", "1")
    return real_home


def _embed(capsys, out: Path, corpus: dict[str, Any], *extra: str) -> str:
    code, _, err = run(
        capsys, "embed", "--ray", "-m", "all-minilm", "-i", *corpus["inputs"], "-o", str(out),
        "--shard-rows", "100", *extra,
    )
    assert code == 0, err
    return err


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if not p.name.startswith(".")}


def test_uninterrupted_output_vectors_ids_and_bad_rows(ray_cluster, env, corpus, capsys) -> None:
    out = corpus["root"] / "whole"
    err = _embed(capsys, out, corpus)
    assert "embedded 1600 texts into 17 shards" in err
    assert "3 bad rows" in err and "bad-rows.jsonl" in err
    bad = [json.loads(line) for line in (out / "bad-rows.jsonl").read_text().splitlines()]
    assert bad == [
        {"id": f"{corpus['inputs'][0]}:502", "error": "not valid JSON (Expecting property name enclosed in double quotes)"},
        {"id": "no-text", "error": "no string 'text' field"},
        {"id": "blank", "error": "empty text"},
    ]
    table = pq.read_table(sorted(out.glob("part-*.parquet")))
    ids = table.column("id").to_pylist()
    lines_path = corpus["inputs"][1]
    assert ids == [f"doc-{i}" for i in range(1200)] + [f"{lines_path}:{n}" for n in range(1, 401)]
    vectors = np.asarray(table.column("embedding").to_pylist(), np.float32)
    from embedserve.config import load
    from embedserve.embedder import Embedder

    sample = [0, 499, 1199, 1200, 1599]
    expected = Embedder("all-minilm", settings=load()).encode([corpus["texts"][i] for i in sample])
    cos = (vectors[sample] * expected).sum(1)
    assert cos.min() >= 0.99999
    corpus["whole"] = _files(out)
    err = _embed(capsys, out, corpus)  # everything is written: nothing to do, same bytes
    assert "17 already written" in err
    assert _files(out) == corpus["whole"]


def test_killed_job_rerun_is_byte_identical(ray_cluster, env, corpus, capsys) -> None:
    out = corpus["root"] / "killed"
    cmd = [
        sys.executable, "-m", "embedserve", "embed", "--ray", ray_cluster.address,
        "-m", "all-minilm", "-i", *corpus["inputs"], "-o", str(out), "--shard-rows", "100",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    deadline = time.monotonic() + 240
    try:
        while len(list(out.glob("part-*.parquet"))) < 3:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the job wrote no shards"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # a crash: no clean-up of any kind
    finally:
        proc.wait(30)
    written = len(list(out.glob("part-*.parquet")))
    assert 3 <= written < 17, written
    err = _embed(capsys, out, corpus)
    assert f"{written} already written" in err or "already written" in err
    assert _files(out) == corpus["whole"]


def test_other_job_in_same_directory_is_refused(ray_cluster, env, corpus, capsys) -> None:
    out = corpus["root"] / "whole"
    code, _, err = run(
        capsys, "embed", "--ray", "-m", "all-minilm", "-i", *corpus["inputs"], "-o", str(out),
        "--shard-rows", "50",
    )
    assert code == 1
    assert "holds shards of another job (different shard_rows, shards)" in error_line(err)
    code, _, err = run(capsys, "embed", "--ray", "-m", "all-minilm", "-i", "/nonexistent.jsonl", "-o", str(out) + "-x")
    assert code == 1 and error_line(err) == "Error: /nonexistent.jsonl: no such file"


def test_index_add_ray_fills_the_same_collection(ray_cluster, env, tmp_path, capsys) -> None:
    """``index add --ray`` stores the vectors plain ``index add`` stores (long docs chunked)."""
    texts = _texts(60)
    docs = tmp_path / "docs.jsonl"
    with docs.open("w") as f:
        for i, t in enumerate(texts):
            body = " ".join([t] * (30 if i % 10 == 0 else 1))  # every tenth document spans chunks
            f.write(json.dumps({"id": f"d{i}", "text": body, "metadata": {"n": i}}) + "\n")
    code, out, err = run(capsys, "index", "add", "plain", str(docs))
    assert code == 0, err
    code, out, err = run(capsys, "index", "add", "viaray", str(docs), "--ray")
    assert code == 0, err
    assert "60 documents (60 added" in out
    from embedserve.config import load
    from embedserve.index.collection import Collection

    with Collection.open("plain", settings=load()) as a, Collection.open("viaray", settings=load()) as b:
        assert a.info().chunks == b.info().chunks > 60
        for query in texts[:5]:
            ha, hb = a.query(query, top_k=5), b.query(query, top_k=5)
            assert [h.id for h in ha] == [h.id for h in hb]
            assert np.allclose([h.score for h in ha], [h.score for h in hb], atol=1e-5)
