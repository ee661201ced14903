"""CLI verb ``rerank``: ``embedserve rerank -m NAME QUERY DOC...`` (or documents from ``--input``).

Prints the documents best first with their scores (``--json``: one JSON object per line with
``index``, ``score``, ``document``), on top of the library's :class:`~embedserve.Reranker`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from embedserve.cli.files import read_bytes
from embedserve.config import Settings, load
from embedserve.errors import InvalidInput


def open_reranker(model: str, settings: Settings) -> Any:
    """The library entry point; tests may replace it."""
    from embedserve.reranker import Reranker

    return Reranker(model, settings=settings)


def _documents(args: argparse.Namespace) -> list[str]:
    if args.documents and args.input:
        raise InvalidInput("give DOC arguments or --input FILE, not both")
    if args.input:
        from embedserve.cli.embed import parse_texts

        path = Path(args.input).expanduser()
        data = sys.stdin.buffer.read() if args.input == "-" else read_bytes(path)
        return parse_texts(data, "<stdin>" if args.input == "-" else str(path)).texts
    if not args.documents:
        raise InvalidInput("no documents: give DOC arguments or --input FILE")
    return list(args.documents)


def cmd_rerank(args: argparse.Namespace) -> int:
    if args.top_n is not None and args.top_n < 1:
        raise InvalidInput(f"--top-n must be at least 1, got {args.top_n}")
    docs = _documents(args)
    reranker = open_reranker(args.model, load())
    ranked = reranker.rank(args.query, docs, top_n=args.top_n, return_documents=True,
                           truncate=not args.no_truncate)
    out = sys.stdout
    for r in ranked:
        if args.json:
            out.write(json.dumps({"index": r.index, "score": r.score, "document": r.document},
                                 ensure_ascii=False) + "\n")
        else:
            text = " ".join((r.document or "").split())
            out.write(f"{r.score:9.4f}  {r.index:>4}  {text}\n")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("rerank", help="score documents against a query with a reranker")
    p.add_argument("query", metavar="QUERY")
    p.add_argument("documents", nargs="*", metavar="DOC")
    p.add_argument("-m", "--model", required=True,
                   help="a cross-encoder or ColBERT model (create --from DIR)")
    p.add_argument("-i", "--input", metavar="FILE",
                   help='documents, one per line or JSONL with a "text" field; - for stdin')
    p.add_argument("-n", "--top-n", type=int, metavar="N", help="print only the best N")
    p.add_argument("--json", action="store_true", help="JSON lines: index, score, document")
    p.add_argument("--no-truncate", action="store_true",
                   help="fail on pairs longer than the model's window")
    p.set_defaults(func=cmd_rerank)
