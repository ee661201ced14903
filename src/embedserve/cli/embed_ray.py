"""``embedserve embed --ray [ADDR] -m MODEL --input PATH... --output DIR``: the corpus job's front
(flags, progress bar, summary); the job itself is ``embedserve.ray.corpus``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from embedserve.config import load
from embedserve.errors import EmbedServeError, InvalidInput


def _bar() -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress(
        "embedding",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    )


def cmd_embed_ray(args: argparse.Namespace) -> int:
    if args.texts:
        raise InvalidInput("--ray embeds --input files, not TEXT arguments")
    if not args.input or "-" in args.input:
        raise InvalidInput("--ray needs --input PATH... (files or URIs; not stdin)")
    if not args.output:
        raise InvalidInput("--ray needs --output DIR (the shards go there)")
    if args.format == "json":
        raise InvalidInput("--ray writes parquet, npy or jsonl shards, not one json document")
    if args.no_truncate:
        raise InvalidInput("--no-truncate is not supported with --ray (long texts are cut)")
    if args.dimensions is not None and args.dimensions < 1:
        raise InvalidInput(f"--dimensions must be at least 1, got {args.dimensions}")
    threads = 1 if args.actor_threads is None else args.actor_threads
    if threads < 1:
        raise InvalidInput(f"--actor-threads must be at least 1, got {threads}")
    try:
        from embedserve.ray import corpus
    except ImportError:
        raise EmbedServeError("--ray needs Ray: pip install 'embedserve[ray]'") from None
    job = corpus.Job(
        model=args.model,
        inputs=tuple(args.input),
        output=args.output,
        fmt=args.format or "parquet",
        shard_rows=1024 if args.shard_rows is None else args.shard_rows,
        threads=threads,
        dimensions=args.dimensions,
    )
    settings = load()
    if sys.stderr.isatty():
        with _bar() as bar:
            task = bar.add_task("embed", total=None)
            outcome = corpus.run(
                job,
                settings,
                address=args.ray or None,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    else:
        outcome = corpus.run(job, settings, address=args.ray or None)
    corpus.report(outcome, job)
    return 0
