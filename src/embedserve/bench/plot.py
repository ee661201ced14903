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
    """Grouped bars: one group per text set, one bar per engine, labelled with texts/s (and the
    ratio to the baseline where there is one)."""
    plt = import_pyplot()
    sets = list(dict.fromkeys(r.texts for r in report.rows))
    engines = list(dict.fromkeys(r.engine for r in report.rows))
    by = {(r.engine, r.texts): r for r in report.rows}
    width = 0.8 / max(1, len(engines))
    fig, ax = plt.subplots(figsize=(2.5 + 2.2 * len(sets), 4.5))
    for k, engine in enumerate(engines):
        xs = [i + (k - (len(engines) - 1) / 2) * width for i in range(len(sets))]
        rows = [by.get((engine, s)) for s in sets]
        heights = [r.texts_per_s if r else 0.0 for r in rows]
        bars = ax.bar(xs, heights, width, label=engine)
        labels = [
            (f"{r.texts_per_s:.0f}" + (f"\n{r.ratio:.2f}x" if r.ratio is not None else ""))
            if r
            else ""
            for r in rows
        ]
        ax.bar_label(bars, labels=labels, fontsize=8)
    ax.set_xticks(range(len(sets)), [f"{s} texts" for s in sets])
    ax.set_ylabel("texts/s")
    ax.set_title(f"embedserve bench ({report.statistic} of {report.repeat})")
    ax.margins(y=0.2)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
