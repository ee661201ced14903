"""The bench runner on fake engines and a fake clock: interleaving, rows, ratios, JSON, table, plot."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from benchkit import ClockedEngine, FakeClock
from rich.console import Console

from embedserve.bench.engines import ST_NAME, EmbedderBench, LoadInfo
from embedserve.bench.runner import (
    BenchReport,
    Cell,
    TextSet,
    file_texts,
    long_texts,
    make_rows,
    run_interleaved,
    short_texts,
)
from embedserve.bench.table import loads_table, results_table
from embedserve.bench.timing import current_rss_mb, peak_rss_mb, percentile, summarize
from embedserve.embedder import Embedder
from embedserve.engine.fake import FakeEngine

SHORT = TextSet("short", [f"short text {i}" for i in range(10)], "test")
LONG = TextSet("long", [" ".join(["word"] * 50) + f" {i}" for i in range(4)], "test")


def test_runs_are_interleaved_and_every_cell_is_timed() -> None:
    clock, log = FakeClock(), []
    a = ClockedEngine("a", clock, 0.01, log)
    b = ClockedEngine("b", clock, 0.02, log)
    cells = run_interleaved([a, b], [SHORT, LONG], repeat=3, single=2, clock=clock, warmup=False)
    assert [(c.engine, c.texts) for c in cells] == [
        ("a", "short"),
        ("a", "long"),
        ("b", "short"),
        ("b", "long"),
    ]
    # pass 1 of every engine and set comes before pass 2 of any
    assert log == ["a:10", "a:4", "b:10", "b:4"] * 3
    for c in cells:
        assert len(c.seconds) == 3
        assert len(c.single_s) == 3 * 2
    a_short = cells[0]
    assert a_short.seconds == pytest.approx([0.1] * 3)
    assert a_short.single_s == pytest.approx([0.01] * 6)
    assert a_short.tokens == sum(len(t.split()) + 2 for t in SHORT.texts)


def test_warmup_runs_before_timing() -> None:
    clock, log = FakeClock(), []
    a = ClockedEngine("a", clock, 0.01, log)
    run_interleaved([a], [SHORT], repeat=1, single=0, clock=clock)
    assert log == ["a:10", "a:10"]  # warm-up (first 32 texts = all 10), then the timed pass
    with pytest.raises(ValueError):
        run_interleaved([a], [SHORT], repeat=0)


def test_rows_rates_and_ratios_from_injected_timings() -> None:
    clock, log = FakeClock(), []
    engines = [
        ClockedEngine("fast", clock, 0.001, log),  # 1000 texts/s
        ClockedEngine(ST_NAME, clock, 0.004, log, kind=ST_NAME),  # 250 texts/s
    ]
    cells = run_interleaved(engines, [SHORT, LONG], repeat=2, single=3, clock=clock, warmup=False)
    rows = make_rows(cells, "best")
    assert len(rows) == 4  # one per engine x text set
    by = {(r.engine, r.texts): r for r in rows}
    fast = by[("fast", "short")]
    assert fast.texts_per_s == pytest.approx(1000)
    assert fast.tokens_per_s == pytest.approx(fast.tokens / 0.01)
    assert fast.ratio == pytest.approx(4.0)
    assert by[("fast", "long")].ratio == pytest.approx(4.0)
    assert by[(ST_NAME, "short")].ratio == pytest.approx(1.0)
    assert fast.p50_ms == pytest.approx(1.0) and fast.p99_ms == pytest.approx(1.0)
    assert by[(ST_NAME, "long")].p50_ms == pytest.approx(4.0)


def test_best_and_median_and_no_baseline() -> None:
    cells = [
        Cell(
            "x", "embedserve", "short", 100, 1000, seconds=[2.0, 1.0, 4.0], single_s=[0.001, 0.003]
        ),
        Cell(ST_NAME, ST_NAME, "short", 100, 1000, seconds=[5.0, 4.0, 3.0]),
    ]
    best = {r.engine: r for r in make_rows(cells, "best")}
    assert best["x"].texts_per_s == pytest.approx(100) and best["x"].ratio == pytest.approx(3.0)
    median = {r.engine: r for r in make_rows(cells, "median")}
    assert median["x"].texts_per_s == pytest.approx(50) and median["x"].ratio == pytest.approx(2.0)
    assert best["x"].p50_ms == pytest.approx(2.0)
    assert math.isnan(best[ST_NAME].p50_ms)  # no single-text samples
    alone = make_rows(cells[:1])
    assert alone[0].ratio is None


def _report() -> BenchReport:
    cells = [
        Cell(
            "all-minilm:latest", "embedserve", "short", 100, 1700, seconds=[0.5], single_s=[0.004]
        ),
        Cell(ST_NAME, ST_NAME, "short", 100, 1700, seconds=[1.0], single_s=[0.009]),
    ]
    loads = [
        LoadInfo("all-minilm:latest", "embedserve", 0.3, 1.2, 200.0),
        LoadInfo(ST_NAME, ST_NAME, 1.5, None, 600.0),
    ]
    return BenchReport(
        make_rows(cells), loads, [TextSet("short", ["x"] * 100, "test")], 1, baseline=ST_NAME
    )


def test_json_shape() -> None:
    data = json.loads(json.dumps(_report().to_json()))
    assert set(data) == {
        "machine",
        "repeat",
        "statistic",
        "baseline",
        "text_sets",
        "loads",
        "results",
        "memory",
    }
    assert data["baseline"] == ST_NAME and data["statistic"] == "best"
    r0 = data["results"][0]
    assert {
        "engine",
        "texts",
        "n_texts",
        "tokens",
        "texts_per_s",
        "tokens_per_s",
        "ratio",
        "p50_ms",
        "p99_ms",
        "seconds_all",
    } <= set(r0)
    assert r0["texts_per_s"] == pytest.approx(200) and r0["ratio"] == pytest.approx(2.0)
    assert data["loads"][0]["first_load_s"] == 1.2 and data["loads"][1]["first_load_s"] is None
    assert data["memory"]["peak_rss_mb"] > 0
    assert data["text_sets"] == [{"name": "short", "texts": 100, "source": "test"}]


def _render(table: object) -> str:
    buf = io.StringIO()
    Console(file=buf, width=200).print(table)
    return buf.getvalue()


def test_table_has_a_row_per_engine_and_set_with_ratio() -> None:
    text = _render(results_table(_report()))
    lines = [ln for ln in text.splitlines() if "short" in ln]
    assert len(lines) == 2
    assert "2.00x" in lines[0] and "200.0" in lines[0] and "4.00" in lines[0]
    assert "1.00x" in lines[1]
    assert f"vs {ST_NAME}" in text
    loads = _render(loads_table(_report()))
    assert "1.20" in loads and "0.30" in loads


def test_timing_helpers(tmp_path: Path) -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert math.isnan(percentile([], 99))
    assert summarize([3.0, 1.0, 2.0], "best") == 1.0
    assert summarize([3.0, 1.0, 2.0], "median") == 2.0
    with pytest.raises(ValueError):
        summarize([1.0], "mean")
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmRSS:\t  204800 kB\n")
    assert current_rss_mb(status) == pytest.approx(200.0)
    assert math.isnan(current_rss_mb(tmp_path / "missing"))
    assert peak_rss_mb() >= current_rss_mb() * 0.5 > 0


def test_text_sets_from_data(tiny_data: Path, tmp_path: Path) -> None:
    short = short_texts(tiny_data, limit=None)
    assert len(short.texts) == len(set(short.texts)) == 8  # unique sentences of 5 pairs
    assert short_texts(tiny_data, limit=3).texts == short_texts(tiny_data, limit=3).texts  # seeded
    assert len(short_texts(tiny_data, limit=3).texts) == 3
    long = long_texts(tiny_data, limit=None)
    assert long.texts[0] == "Cataloguing cats How libraries catalogue cats and other animals."
    f = tmp_path / "texts.txt"
    f.write_text("one\n\ntwo\nthree\n")
    assert file_texts(f).texts == ["one", "two", "three"]
    assert file_texts(f, limit=2).texts == ["one", "two"]


def test_embedder_adapter_counts_real_tokens() -> None:
    engine = FakeEngine()
    bench = EmbedderBench("fake", Embedder.from_engine(engine))
    texts = ["a b c", "d e"]
    assert bench.count_tokens(texts) == 5 + 4  # words plus [CLS] and [SEP], no padding
    assert bench.encode(texts).shape == (2, 32)
    assert bench.encode_one("a b").shape == (32,)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from embedserve.bench.plot import write_plot

    out = write_plot(_report(), tmp_path / "bench.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
