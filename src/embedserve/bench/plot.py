"""A bar chart of texts/s per text set and engine (matplotlib, the ``plot`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embedserve.bench.runner import BenchReport
from embedserve.errors import UserError

MPL_MISSING = "matplotlib is not installed; pip install 'embedserve[plot]'"


def import_pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or a one-line UserError naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError(MPL_MISSING) from None
    return plt


def write_plot(report: BenchReport, path: Path) -> Path:
    """One panel per text set (their scales differ tenfold), one bar per engine, labelled with
    texts/s and, where there is a baseline, the ratio to it."""
    plt = import_pyplot()
    sets = list(dict.fromkeys(r.texts for r in report.rows))
    engines = list(dict.fromkeys(r.engine for r in report.rows))
    by = {(r.engine, r.texts): r for r in report.rows}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(
        1, len(sets), figsize=(1.5 + (1.2 + 0.9 * len(engines)) * len(sets), 4.5), squeeze=False
    )
    for ax, text_set in zip(axes[0], sets):
        rows = [by.get((e, text_set)) for e in engines]
        heights = [r.texts_per_s if r else 0.0 for r in rows]
        bars = ax.bar(range(len(engines)), heights, color=colors[: len(engines)])
        labels = [
            f"{r.texts_per_s:.0f}" + (f"\n{r.ratio:.2f}x" if r.ratio is not None else "")
            if r
            else ""
            for r in rows
        ]
        ax.bar_label(bars, labels=labels, fontsize=8)
        ax.set_xticks(range(len(engines)), engines, rotation=20, ha="right", fontsize=8)
        ax.set_title(f"{text_set} texts", fontsize=10)
        ax.margins(y=0.2)
    axes[0][0].set_ylabel("texts/s")
    fig.suptitle(f"embedserve bench ({report.statistic} of {report.repeat})")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
