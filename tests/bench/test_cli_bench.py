"""``embedserve bench`` and ``embedserve eval`` through ``main``: fake engines on tiny data, the
one-line error paths, and one smoke run of each through the real model (``real_home``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from clikit import error_line, run

from embedserve.bench.engines import ST_NAME, EmbedderBench, LoadInfo
from embedserve.embedder import Embedder
from embedserve.engine.fake import FakeEngine




class FakeST(EmbedderBench):
    kind = ST_NAME


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch, home: Path) -> list[str]:
    """Every opener returns a fake; the list records what was opened."""
    opened: list[str] = []

    def fake_embedder(name: str) -> Embedder:
        # "other" models get a different vocabulary mapping, so their scores and vectors differ
        engine = FakeEngine(name=f"{name}:latest" if ":" not in name else name)
        if name.startswith("other"):
            engine._token_id = lambda w: 2000 + len(w)  # type: ignore[method-assign]
        return Embedder.from_engine(engine)

    def open_bench_model(name: str, settings: Any, first_build: bool) -> Any:
        opened.append(name)
        emb = fake_embedder(name)
        return EmbedderBench(emb.info.name, emb), LoadInfo(
            emb.info.name, "embedserve", 0.1, 0.5, 100.0
        )

    def open_bench_reference(name: str, settings: Any) -> Any:
        opened.append(f"st:{name}")
        return FakeST(ST_NAME, fake_embedder(name)), LoadInfo(ST_NAME, ST_NAME, 1.0, None, 300.0)

    def open_model(name: str, settings: Any) -> Any:
        opened.append(name)
        return fake_embedder(name)

    def open_reference(name: str, settings: Any) -> Any:
        opened.append(f"st:{name}")
        return fake_embedder(name)

    monkeypatch.setattr("embedserve.cli.bench.open_bench_model", open_bench_model)
    monkeypatch.setattr("embedserve.cli.bench.open_bench_reference", open_bench_reference)
    monkeypatch.setattr("embedserve.cli.bench.open_model", open_model)
    monkeypatch.setattr("embedserve.cli.bench.open_reference", open_reference)
    monkeypatch.setattr("embedserve.bench.engines.import_sentence_transformers", lambda: None)
    return opened


# --------------------------------------------------------------------------- bench, fakes


def test_bench_json_with_compare(
    fakes: list[str], tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        "bench",
        "-m",
        "fake",
        "--compare",
        "sentence-transformers",
        "--data-dir",
        str(tiny_data),
        "--repeat",
        "2",
        "--single",
        "2",
        "--json",
    )
    assert code == 0, err
    assert fakes == ["fake", "st:fake"]  # sentence-transformers loads the first model's folder
    data = json.loads(out)
    assert data["repeat"] == 2 and data["baseline"] == ST_NAME
    cells = [(r["engine"], r["texts"]) for r in data["results"]]
    assert cells == [
        ("fake:latest", "short"),
        ("fake:latest", "long"),
        (ST_NAME, "short"),
        (ST_NAME, "long"),
    ]
    for r in data["results"]:
        assert r["texts_per_s"] > 0 and r["tokens_per_s"] > r["texts_per_s"]
        assert len(r["seconds_all"]) == 2
        assert r["ratio"] == pytest.approx(
            r["texts_per_s"]
            / next(
                x["texts_per_s"]
                for x in data["results"]
                if x["engine"] == ST_NAME and x["texts"] == r["texts"]
            )
        )
    assert [t["texts"] for t in data["text_sets"]] == [8, 3]  # all 8 unique sentences, 3 docs
    assert [ld["name"] for ld in data["loads"]] == ["fake:latest", ST_NAME]


def test_bench_table_several_models_and_a_file(
    fakes: list[str], tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "mine.txt"
    f.write_text("first text\nsecond text\n")
    code, out, err = run(
        capsys,
        "bench",
        "-m",
        "fake",
        "-m",
        "other",
        "--texts",
        "short",
        "--texts",
        str(f),
        "--data-dir",
        str(tiny_data),
        "--repeat",
        "1",
        "--single",
        "1",
        "--limit-short",
        "4",
    )
    assert code == 0, err
    rows = [ln for ln in out.splitlines() if "fake:latest" in ln or "other:latest" in ln]
    body = [ln for ln in rows if "short" in ln or "mine.txt" in ln]
    assert len(body) == 4  # 2 engines x 2 text sets
    assert "vs sentence-transformers" not in out  # no baseline, no ratio column
    assert "load s (graph cached)" in out and "peak RSS" in out


def test_bench_plot(
    fakes: list[str], tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "out.png"
    code, _, err = run(
        capsys,
        "bench",
        "--data-dir",
        str(tiny_data),
        "--repeat",
        "1",
        "--single",
        "1",
        "--plot",
        str(png),
        "--json",
    )
    assert code == 0, err
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert f"wrote {png}" in err


# --------------------------------------------------------------------------- eval, fakes


def test_eval_table_with_deltas_and_reference(
    fakes: list[str], tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        "eval",
        "-m",
        "fake",
        "-m",
        "fake:copy",
        "-m",
        "other",
        "--reference",
        "--data-dir",
        str(tiny_data),
    )
    assert code == 0, err
    assert fakes == ["fake", "fake:copy", "other", "st:fake"]
    lines = out.splitlines()
    row = {ln.split("│")[2].strip(): ln for ln in lines if ln.count("│") > 3}
    assert {"Spearman", "nDCG@10", "MAP@100", "Recall@100", "MRR@10"} <= set(row)
    assert row["Spearman"].split("│")[1].strip() == "STS-B"
    assert row["nDCG@10"].split("│")[1].strip() == "CISI"
    header = next(ln for ln in lines if "fake:latest" in ln and "┃" in ln)
    cols = [c.strip() for c in header.split("┃")[1:-1]]
    assert cols[2:] == [
        "fake:latest", "fake:copy", "Δ vs fake:latest", "other:latest", "Δ vs fake:latest",
        "sentence-transformers", "Δ vs fake:latest",
    ]
    cells = [c.strip() for c in row["Spearman"].split("│")[1:-1]]
    assert cells[4] == "+0.0000 ok"  # fake:copy is the same model as the first
    cosine = [c.strip() for c in row["cosine min/mean"].split("│")[1:-1]]
    assert cosine[4] == "1.0000 / 1.0000"  # same vectors as the first
    assert "x speed" in row["seconds"]


def test_eval_json(fakes: list[str], tiny_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "eval", "-m", "fake", "-m", "other", "--data-dir", str(tiny_data), "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["tasks"] == ["stsb", "cisi"]
    assert data["metrics"] == {
        "stsb": ["spearman"], "cisi": ["ndcg@10", "map@100", "recall@100", "mrr@10"]
    }
    assert data["retrieval"] == "truncation"
    assert [m["name"] for m in data["models"]] == ["fake:latest", "other:latest"]
    assert data["models"][0]["metrics"]["cisi"]["ndcg@10"] == data["models"][0]["scores"]["cisi"]
    fake = data["models"][0]["scores"]
    assert fake["cisi"] == pytest.approx(1.0)  # each judged query shares words with its document
    assert -1.0 <= fake["stsb"] <= 1.0
    (c,) = data["comparisons"]
    assert c["name"] == "other:latest" and c["baseline"] == "fake:latest"
    assert c["deltas"]["stsb"] == pytest.approx(data["models"][1]["scores"]["stsb"] - fake["stsb"])
    assert set(c["within_tolerance"]) == {"stsb", "cisi"}
    assert c["cosine_mean"] < 0.99  # a different "model"
    assert data["tolerance"] == {"stsb": 0.003, "cisi": 0.005}
    assert data["published_reference"] is None  # fake is not a registry model


def test_eval_one_task(
    fakes: list[str], tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "eval", "-m", "fake", "--task", "stsb", "--data-dir", str(tiny_data), "--json"
    )
    assert code == 0, err
    assert json.loads(out)["tasks"] == ["stsb"]


# --------------------------------------------------------------------------- errors: one line, exit 1


def test_unknown_model_is_one_line(
    home: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for verb in ("bench", "eval"):
        code, out, err = run(capsys, verb, "-m", "no-such-model", "--data-dir", str(tiny_data))
        assert code == 1 and out == ""
        assert "model 'no-such-model:latest' not found" in error_line(err)


def test_known_model_not_installed_offline_is_one_line(
    home: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "bench", "-m", "all-minilm", "--data-dir", str(tiny_data))
    assert code == 1
    assert "embedserve pull all-minilm:latest" in error_line(err)


def test_compare_without_sentence_transformers(
    home: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails
    code, out, err = run(
        capsys, "bench", "--compare", "sentence-transformers", "--data-dir", str(tiny_data)
    )
    assert code == 1 and out == ""
    assert error_line(err) == (
        "Error: sentence-transformers is not installed; pip install 'embedserve[reference]'"
    )
    code, _, err = run(capsys, "eval", "--reference", "--data-dir", str(tiny_data))
    assert code == 1 and "sentence-transformers is not installed" in error_line(err)


def test_plot_without_matplotlib(
    home: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run(capsys, "bench", "--plot", "x.png", "--data-dir", str(tiny_data))
    assert code == 1 and out == ""
    assert error_line(err) == "Error: matplotlib is not installed; pip install 'embedserve[plot]'"


def test_bad_arguments(
    home: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "bench", "--repeat", "0", "--data-dir", str(tiny_data))
    assert code == 1 and "--repeat must be at least 1" in error_line(err)
    code, _, err = run(
        capsys, "bench", "--texts", str(tmp_path / "missing.txt"), "--data-dir", str(tiny_data)
    )
    assert code == 1 and "missing.txt" in error_line(err)
    code, _, err = run(capsys, "eval", "--data-dir", str(tmp_path / "nowhere"))
    assert code == 1 and "evaluation data folder not found" in error_line(err)


# --------------------------------------------------------------------------- the real model


@pytest.mark.slow
def test_real_model_bench_and_eval_smoke(
    real_home: Path,
    tiny_data: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EMBEDSERVE_HOME", str(real_home))
    monkeypatch.setenv("EMBEDSERVE_OFFLINE", "1")
    code, out, err = run(
        capsys,
        "bench",
        "-m",
        "all-minilm",
        "--limit-short",
        "20",
        "--limit-long",
        "3",
        "--repeat",
        "1",
        "--single",
        "3",
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert [(r["engine"], r["texts"], r["n_texts"]) for r in data["results"]] == [
        ("all-minilm:latest", "short", 20),
        ("all-minilm:latest", "long", 3),
    ]
    for r in data["results"]:
        assert r["texts_per_s"] > 0 and r["tokens_per_s"] > 0 and r["p50_ms"] > 0
    short, long = data["results"]
    assert 5 < short["tokens"] / 20 < 60 and long["tokens"] / 3 > 60  # real word-piece counts
    (load,) = data["loads"]
    assert 0 < load["load_s"] < load["first_load_s"]
    assert load["rss_mb"] > 0 and load["rss_delta_mb"] is not None
    assert data["memory"]["peak_rss_mb"] > 50
    assert data["machine"]["threads"] >= 1

    code, out, err = run(capsys, "eval", "-m", "all-minilm", "--data-dir", str(tiny_data), "--json")
    assert code == 0, err
    scores = json.loads(out)["models"][0]["scores"]
    assert 0.5 < scores["stsb"] <= 1.0  # 5 pairs whose gold order a real model gets mostly right
    assert scores["cisi"] == pytest.approx(1.0)
    assert json.loads(out)["published_reference"] == {"stsb": 0.8672, "cisi": 0.4193}
