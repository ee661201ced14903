"""The bench report as rich tables (throughput and latency per engine x text set; loads; memory)."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from embedserve.bench.runner import BenchReport


def _num(x: float | None, fmt: str) -> str:
    if x is None or math.isnan(x):
        return "-"
    return format(x, fmt)


def results_table(report: BenchReport) -> Table:
    base = report.baseline
    title = f"{report.statistic} of {report.repeat} interleaved pass(es)"
    table = Table(title=title, title_justify="left")
    for name, justify in (
        ("engine", "left"),
        ("texts", "left"),
        ("n", "right"),
        ("tokens/text", "right"),
        ("texts/s", "right"),
        ("tokens/s", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    if base:
        table.add_column(f"vs {base}", justify="right")
    table.add_column("single p50 ms", justify="right")
    table.add_column("single p99 ms", justify="right")
    for r in report.rows:
        cells = [
            r.engine,
            r.texts,
            str(r.n_texts),
            _num(r.tokens / r.n_texts if r.n_texts else None, ".1f"),
            _num(r.texts_per_s, ",.1f"),
            _num(r.tokens_per_s, ",.0f"),
        ]
        if base:
            cells.append(_num(r.ratio, ".2f") + ("x" if r.ratio is not None else ""))
        cells += [_num(r.p50_ms, ".2f"), _num(r.p99_ms, ".2f")]
        table.add_row(*cells)
    return table


def loads_table(report: BenchReport) -> Table:
    table = Table(title="model load (imports excluded)", title_justify="left")
    table.add_column("engine")
    table.add_column("load s (graph cached)", justify="right")
    table.add_column("first load s (graph built)", justify="right")
    table.add_column("RSS after load MiB", justify="right")
    table.add_column("load added MiB", justify="right")
    for info in report.loads:
        table.add_row(
            info.name,
            _num(info.load_s, ".2f"),
            _num(info.first_load_s, ".2f"),
            _num(info.rss_mb, ".0f"),
            _num(info.rss_delta_mb, "+.0f"),
        )
    return table


def print_report(report: BenchReport, console: Console) -> None:
    console.print(results_table(report))
    console.print(loads_table(report))
    sets = "; ".join(f"{t.name}: {len(t.texts)} x {t.source}" for t in report.text_sets)
    console.print(f"texts: {sets}", highlight=False)
    console.print(
        f"memory: peak RSS {_num(report.peak_rss_mb, '.0f')} MiB, current RSS "
        f"{_num(report.current_rss_mb, '.0f')} MiB; {report.threads or 'auto'} threads",
        highlight=False,
    )
