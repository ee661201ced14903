"""A bar chart of an eval run: one panel per task, one group per metric, one bar per model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embedserve.eval.tasks import task_label


def write_plot(results: list[Any], path: Path) -> Path:
    """``results``: :class:`~embedserve.eval.quality.ModelQuality` per model (the first is the
    baseline); bars are labelled with the value and, after the first model, the delta."""
    from embedserve.bench.plot import import_pyplot

    plt = import_pyplot()
    tasks = list(results[0].metrics)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    n = len(results)
    widths = [max(2.5, 0.9 + 0.45 * n * len(results[0].metrics[t])) for t in tasks]
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(sum(widths) + 1, 4.8), squeeze=False,
        gridspec_kw={"width_ratios": widths},
    )
    bar = 0.8 / n
    for ax, task in zip(axes[0], tasks):
        metrics = list(results[0].metrics[task])
        for i, r in enumerate(results):
            xs = [j + (i - (n - 1) / 2) * bar for j in range(len(metrics))]
            values = [r.metrics[task][m] for m in metrics]
            bars = ax.bar(xs, values, bar, label=r.name, color=colors[i % len(colors)])
            labels = [
                f"{v:.3f}" if i == 0 else f"{v:.3f}\n{v - results[0].metrics[task][m]:+.3f}"
                for v, m in zip(values, metrics)
            ]
            ax.bar_label(bars, labels=labels, fontsize=7)
        ax.set_xticks(range(len(metrics)), metrics, fontsize=8)
        ax.set_title(task_label(task), fontsize=10)
        every = [v for r in results for v in r.metrics[task].values()]
        ax.set_ylim(min(0.0, min(every) * 1.3), max(1e-3, max(every)) * 1.3)
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle("embedserve eval")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
