"""``embedserve`` command line: ollama-style verbs.

Each sub-module registers its verbs with ``register(subparsers)`` and sets ``func(args) -> int``.
This file is the only place that turns exceptions into a one-line message and exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from embedserve.errors import EmbedServeError

_MODULES = (
    "models", "embed", "serve", "index", "bench", "keys", "ps", "evaluate", "import_ollama", "finetune",
    "rerank",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 1 (argparse's default is 2 + usage)
        print(f"Error: {message}", file=sys.stderr)
        raise SystemExit(1)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(prog="embedserve", description="Local sentence embeddings, served.")
    from embedserve import __version__

    parser.add_argument("--version", action="version", version=f"embedserve {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _MODULES:
        module = importlib.import_module(f"embedserve.cli.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 1
    try:
        return int(args.func(args) or 0)
    except EmbedServeError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as err:  # unreadable files, full disks: still one line, never a traceback
        print(f"Error: {err.strerror or err}: {err.filename}" if err.filename else f"Error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
