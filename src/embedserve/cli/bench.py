"""CLI verb ``bench`` (speed, latency, load time, memory), and the model openers ``eval`` shares.

Both load models through :func:`open_model` / :func:`open_bench_model` and sentence-transformers
through :func:`open_reference` / :func:`open_bench_reference`; tests replace those four to inject
fakes. Progress goes to stderr; the table (or ``--json``) to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from embedserve.config import DEFAULT_MODEL, Settings, load

# --------------------------------------------------------------------------- openers (patched in tests)


def _installed(name: str, settings: Settings) -> Any:
    """The installed model, pulled visibly first when missing (as the library does)."""
    from embedserve.service.loader import install
    from embedserve.store.local import ModelStore
    from embedserve.store.progress import ConsoleProgress

    store = ModelStore(settings.home)
    model = store.find(name)
    if model is not None:
        return model
    if settings.offline:  # "not found, did you mean" for unknown names, "run: pull" for known
        raise store.not_installed(name)
    with ConsoleProgress(sys.stderr) as progress:
        return install(name, settings, pull_progress=progress)


def open_model(name: str, settings: Settings) -> Any:
    """An encoder for ``eval``: the library's Embedder."""
    from embedserve.embedder import Embedder

    _installed(name, settings)
    return Embedder(name, settings=settings)


def open_reference(name: str, settings: Settings) -> Any:
    """sentence-transformers on the installed folder of ``name`` (an encoder for ``eval``)."""
    return open_bench_reference(name, settings)[0]


def open_bench_model(name: str, settings: Settings, first_build: bool) -> Any:
    """``(BenchEngine, LoadInfo)`` for ``bench``."""
    from embedserve.bench.engines import load_embedder

    _installed(name, settings)
    return load_embedder(name, settings, first_build=first_build)


def open_bench_reference(name: str, settings: Settings) -> Any:
    """``(BenchEngine, LoadInfo)``: sentence-transformers on the installed folder of ``name``, with
    the same window as embedserve's engine (the folder's max_seq_length, 256 for all-minilm)."""
    from embedserve.bench.engines import load_sentence_transformers
    from embedserve.store.folder import inspect_folder

    folder = Path(_installed(name, settings).folder)
    return load_sentence_transformers(
        folder, window=inspect_folder(folder).max_tokens, threads=settings.threads
    )


# --------------------------------------------------------------------------- shared bits


def _settings(args: argparse.Namespace) -> Settings:
    settings = load()
    if getattr(args, "threads", None):
        settings = replace(settings, threads=args.threads)
    return settings


def _stdout_console() -> Any:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


@contextmanager
def _progress(total: int, description: str) -> Iterator[Any]:
    """A transient rich progress bar on stderr; yields the bar (``.advance``, ``.describe``)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )

    class Handle:
        def advance(self, n: int = 1) -> None:
            bar.advance(task, n)

        def describe(self, text: str) -> None:
            bar.update(task, description=text)

    with bar:
        task = bar.add_task(description, total=total)
        yield Handle()


def _models(args: argparse.Namespace) -> list[str]:
    return list(dict.fromkeys(args.model or [DEFAULT_MODEL]))


# --------------------------------------------------------------------------- bench


def _text_sets(args: argparse.Namespace) -> list[Any]:
    from embedserve.bench.runner import file_texts, long_texts, short_texts

    sets = []
    for spec in dict.fromkeys(args.texts or ["short", "long"]):
        if spec == "short":
            sets.append(short_texts(args.data_dir, args.limit_short))
        elif spec == "long":
            sets.append(long_texts(args.data_dir, args.limit_long))
        else:
            sets.append(file_texts(Path(spec), args.limit_short))
    return sets


def bench_command(args: argparse.Namespace) -> int:
    from embedserve.bench.engines import ST_NAME, import_sentence_transformers
    from embedserve.bench.runner import BenchReport, make_rows, run_interleaved
    from embedserve.config import cpu_quota

    if args.repeat < 1:
        from embedserve.errors import InvalidInput

        raise InvalidInput(f"--repeat must be at least 1, got {args.repeat}")
    settings = _settings(args)
    models = _models(args)
    text_sets = _text_sets(args)
    if args.plot:
        from embedserve.bench.plot import import_pyplot

        import_pyplot()  # fail in one line before any model loads
    if args.compare:
        import_sentence_transformers()
    engines, loads = [], []
    for name in models:
        engine, info = open_bench_model(name, settings, not args.no_build_time)
        engines.append(engine)
        loads.append(info)
    if args.compare:
        engine, info = open_bench_reference(models[0], settings)
        engines.append(engine)
        loads.append(info)
    steps = args.repeat * len(engines) * len(text_sets)
    with _progress(steps, "bench") as bar:
        started = [False]

        def step(text: str) -> None:
            if started[0]:
                bar.advance()
            started[0] = True
            bar.describe(text)

        bar.describe("warming up")
        cells = run_interleaved(
            engines, text_sets, repeat=args.repeat, single=args.single, step=step
        )
    baseline = ST_NAME if args.compare else None
    report = BenchReport(
        rows=make_rows(cells, args.stat, baseline or ST_NAME),
        loads=loads,
        text_sets=text_sets,
        repeat=args.repeat,
        statistic=args.stat,
        baseline=baseline,
        threads=settings.threads or cpu_quota(),
    )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        from embedserve.bench.table import print_report

        print_report(report, _stdout_console())
    if args.plot:
        from embedserve.bench.plot import write_plot

        path = write_plot(report, Path(args.plot))
        print(f"wrote {path}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- registration


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from embedserve.bench.runner import DEFAULT_LIMIT_LONG, DEFAULT_LIMIT_SHORT, DEFAULT_SINGLE

    model_help = f"model to measure (repeatable; default {DEFAULT_MODEL})"
    p = sub.add_parser(
        "bench",
        help="measure texts/s, tokens/s, latency, load time and memory",
        description="Throughput (texts/s, tokens/s) on short (STS-B) and long (CISI) texts, "
        "single-text latency, model load time and RSS, optionally beside sentence-transformers "
        "in the same process (interleaved passes).",
    )
    p.add_argument("-m", "--model", action="append", help=model_help)
    p.add_argument(
        "--compare",
        choices=["sentence-transformers"],
        help="also run sentence-transformers (the `reference` extra) on the same folder",
    )
    p.add_argument(
        "--texts",
        action="append",
        metavar="short|long|FILE",
        help="text set (repeatable; default short and long); FILE: one text per line",
    )
    p.add_argument(
        "--limit-short",
        type=int,
        default=DEFAULT_LIMIT_SHORT,
        metavar="N",
        help=f"short texts (and FILE lines) to use (default {DEFAULT_LIMIT_SHORT})",
    )
    p.add_argument(
        "--limit-long",
        type=int,
        default=DEFAULT_LIMIT_LONG,
        metavar="N",
        help=f"long texts to use (default {DEFAULT_LIMIT_LONG})",
    )
    p.add_argument(
        "--repeat", type=int, default=3, metavar="N", help="interleaved passes (default 3)"
    )
    p.add_argument(
        "--single",
        type=int,
        default=DEFAULT_SINGLE,
        metavar="N",
        help=f"single-text calls per set and pass, for latency (default {DEFAULT_SINGLE})",
    )
    p.add_argument(
        "--stat",
        choices=["best", "median"],
        default="best",
        help="how passes are reduced (default best: the least disturbed pass)",
    )
    p.add_argument(
        "--threads", type=int, help="inference threads for every engine (default: CPU quota)"
    )
    p.add_argument(
        "--no-build-time", action="store_true", help="skip timing a first load with the graph built"
    )
    p.add_argument("--plot", metavar="OUT.png", help="write a bar chart (the `plot` extra)")
    p.add_argument("--json", action="store_true", help="print machine-readable results")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="folder of the packaged data's layout (default: the STS-B dev and CISI shipped "
        "with embedserve)",
    )
    p.set_defaults(func=bench_command)
