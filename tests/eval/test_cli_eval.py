"""``embedserve eval`` on the user's data: STS files, BEIR and SMART folders, ``--chunked``,
``--output``/``--plot``; fake models for the wiring, the real model for the packaged numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from clikit import error_line, run
from test_eval_formats import write_beir

from embedserve.embedder import Embedder
from embedserve.engine.fake import FakeEngine


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch, home: Path) -> list[str]:
    opened: list[str] = []

    def open_model(name: str, settings: Any) -> Embedder:
        opened.append(name)
        engine = FakeEngine(name=f"{name}:latest" if ":" not in name else name)
        if name.startswith("other"):  # another vocabulary: other vectors, other scores
            engine._token_id = lambda w: 2000 + len(w)  # type: ignore[method-assign]
        return Embedder.from_engine(engine)

    monkeypatch.setattr("embedserve.cli.bench.open_model", open_model)
    return opened


def test_user_sts_and_beir_side_by_side(
    fakes: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sts = tmp_path / "mine.tsv"
    sts.write_text(
        "sentence1\tsentence2\tscore\n"
        "cats purr\tcats purr\t5\ncats purr\tcats purr loudly\t4\ncats purr\tfish swim\t0\n"
    )
    beir = write_beir(tmp_path / "minibeir")
    out_json = tmp_path / "out.json"
    code, out, err = run(
        capsys, "eval", "-m", "fake", "-m", "other", "--sts", str(sts),
        "--retrieval", str(beir), "--output", str(out_json), "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data == json.loads(out_json.read_text())
    assert data["tasks"] == ["mine", "minibeir"]  # only the user's tasks, no built-in ones
    fake = data["models"][0]["metrics"]
    assert fake["mine"]["spearman"] == pytest.approx(1.0)
    # q1 -> d1 (gain 2) shares "cats purr"; q2 -> d2 shares "dogs"
    assert fake["minibeir"] == {
        "ndcg@10": pytest.approx(1.0), "map@100": pytest.approx(1.0),
        "recall@100": pytest.approx(1.0), "mrr@10": pytest.approx(1.0),
    }
    (c,) = data["comparisons"]
    other = data["models"][1]["metrics"]
    assert c["metric_deltas"]["minibeir"]["mrr@10"] == pytest.approx(
        other["minibeir"]["mrr@10"] - 1.0
    )
    assert c["speed_vs_baseline"] > 0
    assert data["published_reference"] is None
    assert f"wrote {out_json}" in err


def test_builtin_and_user_tasks_together_and_chunked(
    fakes: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = tmp_path / "data"
    (tiny / "cisi").mkdir(parents=True)
    (tiny / "cisi" / "CISI.ALL").write_text(".X\n.I 1\n.T\nCats\n.W\ncats purr\n.I 2\n.W\ndogs bark\n")
    (tiny / "cisi" / "CISI.QRY").write_text(".I 1\n.W\nwhy cats purr\n")
    (tiny / "cisi" / "CISI.REL").write_text("1 1 0 0.0\n")
    beir = write_beir(tmp_path / "b")
    code, out, err = run(
        capsys, "eval", "-m", "fake", "--task", "cisi", "--data-dir", str(tiny),
        "--retrieval", str(beir), "--chunked", "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["tasks"] == ["cisi", "b"] and data["retrieval"] == "collection (chunked)"
    assert data["models"][0]["scores"] == {"cisi": pytest.approx(1.0), "b": pytest.approx(1.0)}


def test_plot_writes_a_png(fakes: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "eval.png"
    code, _, err = run(
        capsys, "eval", "-m", "fake", "-m", "other", "--retrieval", str(write_beir(tmp_path / "b")),
        "--plot", str(png),
    )
    assert code == 0, err
    assert png.read_bytes()[:4] == b"\x89PNG" and f"wrote {png}" in err


def test_errors_are_one_line(fakes: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "eval", "--sts", str(tmp_path / "nope.csv"))
    assert code == 1 and out == "" and "nope.csv: no such file" in error_line(err)
    code, _, err = run(capsys, "eval", "--retrieval", str(tmp_path))
    assert code == 1 and "needs one *.ALL and one *.QRY" in error_line(err)
    code, _, err = run(capsys, "eval", "--chunked", "--reference")
    assert code == 1 and "--chunked" in error_line(err)
    f = tmp_path / "a.csv"
    f.write_text("x,y,1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.csv").write_text("x,y,1\nx,z,2\n")
    code, out, err = run(
        capsys, "eval", "-m", "fake", "--sts", str(f), "--sts", str(tmp_path / "sub" / "a.csv"), "--json"
    )
    assert code == 0, err
    assert json.loads(out)["tasks"] == ["a", "a-2"]  # the same file name twice


@pytest.mark.slow
def test_real_model_on_the_packaged_data_and_a_beir_folder_chunked(
    real_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EMBEDSERVE_HOME", str(real_home))
    monkeypatch.setenv("EMBEDSERVE_OFFLINE", "1")
    code, out, err = run(capsys, "eval", "-m", "all-minilm", "--task", "stsb", "--json")
    assert code == 0, err
    data = json.loads(out)  # no --data-dir: the packaged STS-B dev
    assert data["models"][0]["scores"]["stsb"] == pytest.approx(0.8672, abs=5e-4)
    assert data["published_reference"] == {"stsb": 0.8672, "cisi": 0.4193}



@pytest.mark.slow
def test_real_model_chunked_retrieval_finds_what_truncation_cuts_off(
    real_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EMBEDSERVE_HOME", str(real_home))
    monkeypatch.setenv("EMBEDSERVE_OFFLINE", "1")
    beir = tmp_path / "b"
    (beir / "qrels").mkdir(parents=True)
    cats = (
        "Cats purr when they are content, and sometimes when they are hurt. The purr comes from "
        "the larynx, whose muscles twitch many times a second. Why cats purr is still debated. "
    )
    corpus = {
        "long": "Rivers carry fish downstream through the valley. " * 45 + cats * 3,
        "d1": "Kittens sleep most of the day on the sofa.",
        "d2": "Dogs bark loudly at strangers.",
        "d3": "The stock market fell sharply today.",
    }
    (beir / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": i, "text": t}) for i, t in corpus.items()) + "\n"
    )
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "why do cats purr"}) + "\n")
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\tlong\t1\n")
    mrr = {}
    for extra in ([], ["--chunked"]):
        code, out, err = run(capsys, "eval", "-m", "all-minilm", "--retrieval", str(beir), "--json", *extra)
        assert code == 0, err
        mrr[bool(extra)] = json.loads(out)["models"][0]["metrics"]["b"]["mrr@10"]
    # the cat paragraphs sit past the 256-token window: truncation cannot see them, a chunk can
    assert mrr[True] == pytest.approx(1.0) and mrr[False] < 1.0
