"""CLI verb ``finetune``: train an installed model on the user's data into a new, servable model.

``embedserve finetune BASE --train FILE|DIR --name NEW [--loss cosine|mnrl] [--epochs E]
[--batch-size B] [--lr LR] [--seed S] [--eval FILE|DIR] [--quantize int8] [--threads N]``
(the ``train`` extra). A progress bar with the loss on stderr; ``--eval`` scores the base and the
new model through embedserve's own engine, before training and after installing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from embedserve.cli import bench as _bench


def _eval_data(spec: str) -> Any:
    from embedserve.eval.tasks import EvalData

    if Path(spec).expanduser().is_dir() or (":" in spec and not Path(spec).exists()):
        return EvalData.from_files(retrieval=[spec])
    return EvalData.from_files(sts=[Path(spec)])


def _score(name: str, data: Any, settings: Any) -> dict[str, float]:
    from embedserve.eval.quality import evaluate

    enc = _bench.open_model(name, settings)
    with _bench._progress(data.size(), f"scoring {name}") as bar:
        result = evaluate(name, enc, data, progress=bar.advance)
    return {f"{t} {m}": v for t, ms in result.metrics.items() for m, v in ms.items()}


@contextmanager
def _train_bar(total_hint: int) -> Iterator[Any]:
    """A rich bar on stderr: steps done / total, epoch, current and epoch-mean loss, ETA."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    with bar:
        task = bar.add_task("loading", total=total_hint or None, loss="")

        def on_step(s: Any) -> None:
            bar.update(
                task,
                completed=s.step,
                total=s.total,
                description=f"epoch {s.epoch}",
                loss=f"loss {s.loss:.4f} (epoch mean {s.mean_loss:.4f})",
            )

        def on_status(text: str) -> None:
            bar.console.print(text, highlight=False)

        yield on_step, on_status


def finetune_command(args: argparse.Namespace) -> int:
    from embedserve.store.local import ModelStore
    from embedserve.train.data import load_train_data
    from embedserve.train.finetune import finetune
    from embedserve.train.loop import TrainConfig, import_torch

    settings = _bench._settings(args)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    config.check()
    import_torch()  # one line naming the extra before anything else happens
    store = ModelStore.from_settings(settings)
    new = store.resolve(args.name)
    if store.find(new) is not None:
        from embedserve.errors import InvalidInput

        raise InvalidInput(f"model '{new}' already exists; remove it first or choose another name")
    data = load_train_data(args.train, args.loss)
    eval_data = _eval_data(args.eval) if args.eval else None
    base = _bench._installed(args.base, settings)
    before = _score(base.name, eval_data, settings) if eval_data is not None else None
    print(
        f"fine-tuning {base.name} on {len(data)} {args.loss} examples from {data.source} "
        f"({config.epochs} epoch(s), batch {config.batch_size}, lr {config.lr}, seed {config.seed})",
        file=sys.stderr,
    )
    with _train_bar(0) as (on_step, on_status):
        model = finetune(
            store,
            base.name,
            new,
            data,
            config,
            quantize=args.quantize,
            threads=settings.threads,
            on_step=on_step,
            on_status=on_status,
        )
    rec = model.training or {}
    print(
        f"installed {model.name} ({model.quantization}, {rec.get('steps')} steps in "
        f"{rec.get('seconds')} s, final epoch loss {rec.get('epoch_losses', ['?'])[-1]})"
    )
    if eval_data is not None and before is not None:
        after = _score(model.name, eval_data, settings)
        width = max(len(k) for k in before)
        print(f"{'':{width}}  {'before':>8}  {'after':>8}  {'delta':>8}")
        for key, b in before.items():
            a = after[key]
            print(f"{key:{width}}  {b:8.4f}  {a:8.4f}  {a - b:+8.4f}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "finetune",
        help="fine-tune an installed model on your data into a new model (the `train` extra)",
        description="Fine-tunes BASE with sentence-transformers (CPU) and installs the result as "
        "NEW, ready for embed, serve and collections. --loss cosine trains on scored pairs (STS "
        "CSV/TSV, scores 0..1 or 0..5); --loss mnrl on (anchor, positive) pairs (CSV/TSV/JSONL) or "
        "a BEIR/SMART folder's judged (query, document) pairs, with in-batch negatives.",
    )
    p.add_argument("base", metavar="BASE", help="installed model to start from")
    p.add_argument("--train", required=True, metavar="FILE|DIR", help="training data")
    p.add_argument("--name", required=True, metavar="NEW", help="name of the new model")
    p.add_argument("--loss", choices=["cosine", "mnrl"], default="cosine")
    p.add_argument("--epochs", type=int, default=1, metavar="E", help="default 1")
    p.add_argument("--batch-size", type=int, default=16, metavar="B", help="default 16")
    p.add_argument("--lr", type=float, default=2e-5, help="peak learning rate (default 2e-5)")
    p.add_argument("--seed", type=int, default=42, metavar="S", help="default 42")
    p.add_argument(
        "--eval",
        metavar="FILE|DIR",
        help="score base and new model on STS pairs (file) or a retrieval folder, before/after",
    )
    p.add_argument("--quantize", choices=["int8"], help="install the new model as int8")
    p.add_argument("--threads", type=int, help="torch and inference threads (default: CPU quota)")
    p.set_defaults(func=finetune_command)
