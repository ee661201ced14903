"""CLI verbs ``embed`` and ``similarity``, on top of the library's :class:`~embedserve.Embedder`.

``embed`` reads texts from arguments, ``--input FILE`` (one text per line, or JSONL with a
``text`` field: a ``.jsonl`` name or a first line starting with ``{``), or stdin; writes JSONL,
JSON or ``.npy``; and prints a one-line summary (texts, tokens, seconds) on stderr.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from embedserve.cli.files import read_bytes
from embedserve.config import DEFAULT_MODEL, Settings, load
from embedserve.errors import InputFileError, InputTooLong, InvalidInput

FORMATS = ("jsonl", "json", "npy")


def open_embedder(model: str, settings: Settings) -> Any:
    """The library entry point; tests replace this to inject a fake engine."""
    from embedserve.embedder import Embedder

    return Embedder(model, settings=settings)


@dataclass
class Texts:
    texts: list[str] = field(default_factory=list)
    records: list[dict[str, Any] | None] = field(default_factory=list)  # JSONL input rows
    lines: list[int] = field(default_factory=list)  # 1-based source line of each text
    origin: str = "argument"
    from_file: bool = False

    def where(self, index: int) -> str:
        if self.from_file:
            return f"{self.origin}:{self.lines[index]}"
        return f"text {index + 1}"


def parse_texts(data: bytes, origin: str, *, jsonl: bool | None = None) -> Texts:
    """Split ``data`` into texts; errors name the file and line (non-UTF-8, bad JSON, no text)."""
    out = Texts(origin=origin, from_file=True)
    raw_lines = data.split(b"\n")
    if jsonl is None:
        first = next((ln.strip() for ln in raw_lines if ln.strip()), b"")
        jsonl = first.startswith(b"{")
    for number, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputFileError(f"{origin}: line {number} is not valid UTF-8") from None
        line = line.removesuffix("\r")
        if number == 1:
            line = line.removeprefix("\ufeff")
        if not line.strip():
            continue
        if jsonl:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputFileError(
                    f"{origin}: line {number} is not valid JSON ({err.msg})"
                ) from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise InputFileError(f'{origin}: line {number} has no string "text" field')
            out.texts.append(record["text"])
            out.records.append(record)
        else:
            out.texts.append(line)
            out.records.append(None)
        out.lines.append(number)
    return out


def read_input(args: argparse.Namespace, stdin: IO[Any]) -> Texts:
    if args.texts and args.input:
        raise InvalidInput("give TEXT arguments or --input FILE, not both")
    if args.texts:
        return Texts(
            texts=list(args.texts),
            records=[None] * len(args.texts),
            lines=list(range(1, len(args.texts) + 1)),
        )
    if args.input and args.input != "-":
        path = Path(args.input).expanduser()
        data = read_bytes(path)
        return parse_texts(data, str(path), jsonl=True if path.suffix == ".jsonl" else None)
    if args.input == "-" or not _isatty(stdin):
        buffer = getattr(stdin, "buffer", None)
        data = buffer.read() if buffer is not None else stdin.read().encode("utf-8")
        return parse_texts(data, "<stdin>")
    raise InvalidInput("no input: give TEXT arguments, --input FILE, or pipe texts on stdin")


def _isatty(stream: IO[Any]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _encode(
    emb: Any, source: Texts, args: argparse.Namespace, show_bar: bool
) -> tuple[np.ndarray, int]:
    truncate = not args.no_truncate
    try:
        tokens = sum(emb.count_tokens(source.texts, truncate=truncate))
        if not show_bar:
            return emb.encode(source.texts, truncate=truncate, dimensions=args.dimensions), tokens
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        console = Console(file=sys.stderr)
        with Progress(
            "embedding",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("embed", total=len(source.texts))
            vectors = emb.encode(
                source.texts,
                truncate=truncate,
                dimensions=args.dimensions,
                progress=lambda n: bar.advance(task, n),
            )
        return vectors, tokens
    except InputTooLong as err:
        raise InvalidInput(
            f"{source.where(err.index)}: text is {err.tokens} tokens long, over the model's limit of "
            f"{err.limit} (drop --no-truncate to cut it)"
        ) from None


def write_output(vectors: np.ndarray, source: Texts, args: argparse.Namespace, model: str) -> None:
    import orjson

    if args.format == "npy":
        buf = io.BytesIO()
        np.save(buf, vectors.astype(np.float32))
        Path(args.output).expanduser().write_bytes(buf.getvalue())
        return
    if args.format == "json":
        body = (
            orjson.dumps(
                {"model": model, "dimensions": int(vectors.shape[1]), "embeddings": vectors},
                option=orjson.OPT_SERIALIZE_NUMPY,
            )
            + b"\n"
        )
    else:
        rows = []
        for i, vec in enumerate(vectors):
            record = dict(source.records[i] or {"text": source.texts[i]})
            record["embedding"] = vec
            rows.append(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY))
        body = b"\n".join(rows) + (b"\n" if rows else b"")
    if args.output:
        Path(args.output).expanduser().write_bytes(body)
    else:
        sys.stdout.write(body.decode("utf-8"))
        sys.stdout.flush()


def cmd_embed(args: argparse.Namespace) -> int:
    if args.ray is not None:
        from embedserve.cli.embed_ray import cmd_embed_ray

        return cmd_embed_ray(args)
    for flag, value in (("--shard-rows", args.shard_rows), ("--actor-threads", args.actor_threads)):
        if value is not None:
            raise InvalidInput(f"{flag} needs --ray")
    if args.format == "parquet":
        raise InvalidInput("--format parquet needs --ray (sharded output)")
    if args.input and len(args.input) > 1:
        raise InvalidInput("several --input files need --ray (sharded output into a directory)")
    args.input = args.input[0] if args.input else None
    args.format = args.format or "jsonl"
    if args.format == "npy" and not args.output:
        raise InvalidInput("--format npy writes binary data: give --output FILE")
    if args.dimensions is not None and args.dimensions < 1:
        raise InvalidInput(f"--dimensions must be at least 1, got {args.dimensions}")
    source = read_input(args, sys.stdin)
    if not source.texts:
        raise InputFileError(f"{source.origin}: no texts to embed")
    settings = load()
    emb = open_embedder(args.model, settings)
    start = time.perf_counter()
    show_bar = source.from_file and _isatty(sys.stderr)
    vectors, tokens = _encode(emb, source, args, show_bar)
    elapsed = time.perf_counter() - start
    write_output(vectors, source, args, emb.info.name)
    n = len(source.texts)
    print(
        f"embedded {n} text{'s' if n != 1 else ''} ({tokens} tokens, {vectors.shape[1]} dimensions) "
        f"in {elapsed:.2f} s with {emb.info.name}",
        file=sys.stderr,
    )
    return 0


def _label(text: str, width: int = 24) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_similarity(args: argparse.Namespace) -> int:
    if len(args.texts) < 2:
        raise InvalidInput("similarity needs at least two texts")
    emb = open_embedder(args.model, load())
    vectors = emb.encode(list(args.texts), normalize=True)
    from embedserve.vectors import similarity

    matrix = similarity(vectors, vectors, "cosine")
    from rich.console import Console
    from rich.table import Table

    labels = [f"{i + 1}. {_label(t)}" for i, t in enumerate(args.texts)]
    table = Table(title=f"cosine similarity ({emb.info.name})", show_lines=False)
    table.add_column("")
    for i in range(len(labels)):
        table.add_column(str(i + 1), justify="right")
    for i, label in enumerate(labels):
        table.add_row(label, *(f"{matrix[i, j]:.3f}" for j in range(len(labels))))
    Console(file=sys.stdout, width=max(80, 32 + 8 * len(labels))).print(table)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("embed", help="embed texts (arguments, --input FILE, or stdin)")
    p.add_argument("texts", nargs="*", metavar="TEXT")
    p.add_argument(
        "-m", "--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})"
    )
    p.add_argument(
        "-i",
        "--input",
        metavar="FILE",
        nargs="+",
        help='one text per line, or JSONL with a "text" field; - for stdin '
        "(with --ray: files or URIs, JSONL, Parquet, CSV or text)",
    )
    p.add_argument(
        "-o", "--output", metavar="FILE", help="write here instead of stdout (--ray: a directory)"
    )
    p.add_argument(
        "-f",
        "--format",
        choices=(*FORMATS, "parquet"),
        default=None,
        help="output format (default jsonl; npy needs --output; --ray: parquet, npy or jsonl, "
        "default parquet)",
    )
    p.add_argument(
        "--dimensions", type=int, metavar="N", help="keep the first N dimensions (re-normalised)"
    )
    p.add_argument(
        "--no-truncate", action="store_true", help="fail on texts longer than the model's window"
    )
    r = p.add_argument_group("corpus embedding on Ray (needs the [ray] extra)")
    r.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDR",
        help="embed --input files with Ray Data into sharded, resumable output in --output DIR "
        "(ADDR: a cluster to join; default: a local Ray instance)",
    )
    r.add_argument("--shard-rows", type=int, metavar="N", help="rows per output shard (1024)")
    r.add_argument(
        "--actor-threads", type=int, metavar="T", help="CPUs and engine threads per actor (1)"
    )
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("similarity", help="cosine similarity matrix of texts")
    p.add_argument("texts", nargs="+", metavar="TEXT")
    p.add_argument(
        "-m", "--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})"
    )
    p.set_defaults(func=cmd_similarity)
