"""CLI verb ``eval``: models side by side on STS and retrieval tasks, built-in or the user's.

``embedserve eval -m A -m B [--sts FILE]... [--retrieval DIR[:SPLIT]]... [--chunked]
[--json | --output FILE.json] [--plot FILE.png]``. Models load through ``cli.bench``'s openers
(tests replace them); progress goes to stderr, the table (or ``--json``) to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from embedserve.cli import bench as _bench
from embedserve.config import DEFAULT_MODEL
from embedserve.errors import InvalidInput

_METRIC_LABELS = {
    "spearman": "Spearman",
    "ndcg@10": "nDCG@10",
    "map@100": "MAP@100",
    "recall@100": "Recall@100",
    "mrr@10": "MRR@10",
}

# --------------------------------------------------------------------------- data


def _data(args: argparse.Namespace) -> Any:
    from embedserve.eval.tasks import BUILTIN, EvalData

    user = bool(args.sts or args.retrieval)
    builtin = list(BUILTIN) if args.task == "all" else [args.task] if args.task else []
    if not user and not builtin:
        builtin = list(BUILTIN)
    tasks = EvalData.load(builtin, args.data_dir).tasks if builtin else []
    if user:
        tasks += EvalData.from_files(args.sts or [], args.retrieval or []).tasks
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InvalidInput(f"two tasks are named {dup!r}; rename one of the files")
    return EvalData(tasks)


# --------------------------------------------------------------------------- command


def eval_command(args: argparse.Namespace) -> int:
    from embedserve.eval.quality import compare, evaluate

    settings = _bench._settings(args)
    models = list(dict.fromkeys(args.model or [DEFAULT_MODEL]))
    if args.chunked and args.reference:
        raise InvalidInput("--chunked indexes through a collection; it cannot run with --reference")
    if args.plot:
        from embedserve.bench.plot import import_pyplot

        import_pyplot()  # fail in one line before any model loads
    data = _data(args)
    if args.reference:
        from embedserve.bench.engines import import_sentence_transformers

        import_sentence_transformers()
    encoders: list[tuple[str, Any]] = []
    for name in models:
        enc = _bench.open_model(name, settings)
        encoders.append((enc.info.name, enc))
    if args.reference:
        encoders.append(("sentence-transformers", _bench.open_reference(models[0], settings)))
    results = []
    with _bench._progress(data.size() * len(encoders), "eval") as bar:
        for label, enc in encoders:
            bar.describe(f"encoding with {label}")
            results.append(evaluate(label, enc, data, progress=bar.advance, chunked=args.chunked))
    comparisons = [compare(r, results[0]) for r in results[1:]]
    published = _published(models[0]) if set(data.names) & {"stsb", "cisi"} else None
    report = eval_json(results, comparisons, published, chunked=args.chunked)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_eval(results, comparisons, published, _bench._stdout_console())
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    if args.plot:
        from embedserve.eval.plot import write_plot

        print(f"wrote {write_plot(results, Path(args.plot))}", file=sys.stderr)
    return 0


def _published(name: str) -> dict[str, float] | None:
    from embedserve.errors import InvalidModelName
    from embedserve.eval.quality import PUBLISHED
    from embedserve.store.registry import DEFAULT_REGISTRY

    try:
        card = DEFAULT_REGISTRY.lookup(name)
    except InvalidModelName:
        return None
    return PUBLISHED.get(card.repo) if card is not None else None


def _clean(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else x


def eval_json(
    results: list[Any],
    comparisons: list[Any],
    published: dict[str, float] | None,
    *,
    chunked: bool = False,
) -> dict[str, Any]:
    from embedserve.eval.quality import TOLERANCE

    return {
        "tasks": list(results[0].scores),
        "metrics": {t: list(ms) for t, ms in results[0].metrics.items()},
        "retrieval": "collection (chunked)" if chunked else "truncation",
        "models": [
            {
                "name": r.name,
                "scores": {k: _clean(v) for k, v in r.scores.items()},
                "metrics": {t: {m: _clean(v) for m, v in ms.items()} for t, ms in r.metrics.items()},
                "seconds": r.seconds,
                "task_seconds": r.task_seconds,
            }
            for r in results
        ],
        "comparisons": [
            {
                "name": c.name,
                "baseline": c.baseline,
                "deltas": c.deltas,
                "metric_deltas": c.metric_deltas,
                "within_tolerance": c.within(),
                "cosine_min": _clean(c.cosine_min),
                "cosine_mean": _clean(c.cosine_mean),
                "speed_vs_baseline": c.speed,
            }
            for c in comparisons
        ],
        "tolerance": TOLERANCE,
        "published_reference": published,
    }


def print_eval(
    results: list[Any], comparisons: list[Any], published: dict[str, float] | None, console: Any
) -> None:
    """Rows: task x metric, then seconds and vector agreement; columns: each model, and after
    the first, its delta against the first (``ok``/``LOW`` on each task's primary metric)."""
    from rich.table import Table

    from embedserve.eval.quality import DEFAULT_TOLERANCE, TOLERANCE
    from embedserve.eval.tasks import task_label

    first = results[0]
    table = Table(title="embedding quality", title_justify="left")
    table.add_column("task")
    table.add_column("metric")
    for i, r in enumerate(results):
        table.add_column(r.name, justify="right")
        if i:
            table.add_column(f"Δ vs {first.name}", justify="right")
    by_name = {c.name: c for c in comparisons}
    for task, metrics in first.metrics.items():
        for j, m in enumerate(metrics):
            row = [task_label(task) if j == 0 else "", _METRIC_LABELS.get(m, m)]
            for i, r in enumerate(results):
                row.append(f"{r.metrics[task][m]:.4f}")
                if i:
                    c = by_name[r.name]
                    cell = f"{c.metric_deltas[task][m]:+.4f}"
                    if j == 0:
                        cell += " ok" if c.within()[task] else " LOW"
                    row.append(cell)
            table.add_row(*row)
    seconds = ["total", "seconds"]
    cosine = ["vectors", "cosine min/mean"]
    for i, r in enumerate(results):
        seconds.append(f"{r.seconds:.2f}" if r.seconds < 10 else f"{r.seconds:.1f}")
        cosine.append("-" if i == 0 else "")
        if i:
            c = by_name[r.name]
            seconds.append(f"{c.speed:.2f}x speed" if c.speed else "-")
            cosine[-1] = "-"
            cosine.append(
                "-" if math.isnan(c.cosine_min) else f"{c.cosine_min:.4f} / {c.cosine_mean:.4f}"
            )
    table.add_row(*seconds, end_section=not comparisons)
    if comparisons:
        table.add_row(*cosine)
    console.print(table)
    if comparisons:
        tol = ", ".join(
            f"{task_label(t)} -{TOLERANCE.get(t, DEFAULT_TOLERANCE)}" for t in first.metrics
        )
        console.print(f"ok: within the int8 tolerance of the first model ({tol})", highlight=False)
    if published:
        ref = ", ".join(
            f"{task_label(t)} {published[t]:.4f}" for t in first.metrics if t in published
        )
        console.print(f"sentence-transformers fp32 reference (data README): {ref}", highlight=False)


# --------------------------------------------------------------------------- registration


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    e = sub.add_parser(
        "eval",
        help="score models side by side on STS (Spearman) and retrieval (nDCG@10, MAP, recall, MRR)",
        description="Scores each model on STS pairs (Spearman of cosine vs gold) and retrieval sets "
        "(nDCG@10, MAP@100, Recall@100, MRR@10, as trec_eval computes them). Default: the STS-B dev "
        "and CISI sets shipped with embedserve. With two or more models: deltas, speed and vector "
        "cosine against the first.",
    )
    e.add_argument("-m", "--model", action="append", help=f"model (repeatable; default {DEFAULT_MODEL})")
    e.add_argument(
        "--task",
        choices=["stsb", "cisi", "all"],
        help="built-in set(s) to score (default: all, unless --sts/--retrieval are given)",
    )
    e.add_argument(
        "--sts",
        action="append",
        type=Path,
        metavar="FILE",
        help="STS pairs CSV/TSV: sentence1, sentence2, score (header optional; repeatable)",
    )
    e.add_argument(
        "--retrieval",
        action="append",
        metavar="DIR[:SPLIT]",
        help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv; default split test) "
        "or a SMART collection (*.ALL, *.QRY, *.REL) (repeatable)",
    )
    e.add_argument(
        "--chunked",
        action="store_true",
        help="rank retrieval sets through a collection (long documents chunked, best chunk "
        "scores) instead of truncating each document at the model's window",
    )
    e.add_argument(
        "--reference",
        action="store_true",
        help="add sentence-transformers on the first model's folder (the `reference` extra)",
    )
    e.add_argument("--threads", type=int, help="inference threads (default: CPU quota)")
    e.add_argument("--json", action="store_true", help="print machine-readable results")
    e.add_argument("--output", metavar="FILE.json", help="also write the results as JSON")
    e.add_argument("--plot", metavar="FILE.png", help="write a bar chart (the `plot` extra)")
    e.add_argument(
        "--data-dir",
        type=Path,
        help="folder of the built-in sets' layout (default: the ones shipped with embedserve)",
    )
    e.set_defaults(func=eval_command)
