"""CLI verbs: ``index add|query|list|info|rm|delete`` and ``ask`` (collections and RAG)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from embedserve.cli.files import decode_utf8, read_bytes
from embedserve.errors import EmbedServeError, InputFileError, InvalidInput

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("index", help="persistent collections for semantic search")
    verbs = p.add_subparsers(dest="index_command", metavar="VERB", parser_class=type(p))
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 1)[1])

    a = verbs.add_parser("add", help="add or update documents from files (.txt/.md: one per file; .jsonl)")
    a.add_argument("name")
    a.add_argument("files", nargs="+", metavar="FILE")
    a.add_argument("--model", default=None, help="model for a new collection (default all-minilm)")
    a.add_argument("--chunk-tokens", type=int, default=None, help="tokens per chunk, 0 = off (truncate)")
    a.add_argument("--overlap", type=int, default=None, help="tokens shared by consecutive chunks")
    a.add_argument("--batch-size", type=int, default=64, help="documents per commit")
    a.add_argument(
        "--ray", nargs="?", const="", default=None, metavar="ADDR",
        help="embed the chunks with the embed --ray pipeline (ADDR: a cluster; default local Ray)",
    )
    a.add_argument("--actor-threads", type=int, default=1, help="with --ray: CPUs per actor")
    a.add_argument("--multivector", metavar="CODEC", choices=("int8", "binary", "float32"),
                   default=None, help="also store token vectors (int8|binary|float32) for MaxSim")
    a.set_defaults(func=cmd_add)

    q = verbs.add_parser("query", help="search a collection")
    q.add_argument("name")
    q.add_argument("text")
    q.add_argument("-k", "--top-k", type=int, default=5)
    q.add_argument("--where", default=None, help='metadata filter (JSON), e.g. \'{"year": {"$gte": 2020}}\'')
    q.add_argument("--json", action="store_true", help="print the hits as JSON")
    q.add_argument("--rerank", metavar="MODEL", default=None,
                   help="re-score the dense candidates with a reranker model, or 'maxsim' (multivector)")
    q.add_argument("--candidates", type=int, default=100, help="dense candidates to re-score")
    q.set_defaults(func=cmd_query)

    ls = verbs.add_parser("list", help="list collections")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    i = verbs.add_parser("info", help="show one collection")
    i.add_argument("name")
    i.set_defaults(func=cmd_info)

    rm = verbs.add_parser("rm", help="delete a whole collection")
    rm.add_argument("name")
    rm.set_defaults(func=cmd_rm)

    d = verbs.add_parser("delete", help="delete documents by id or filter")
    d.add_argument("name")
    d.add_argument("--ids", nargs="+", default=None)
    d.add_argument("--where", default=None)
    d.set_defaults(func=cmd_delete)

    k = sub.add_parser("ask", help="answer a question from a collection (RAG)")
    k.add_argument("name")
    k.add_argument("question")
    k.add_argument("-k", "--top-k", type=int, default=4)
    k.add_argument("--where", default=None)
    k.add_argument("--llm", default=None, help="Ollama-compatible URL (default: EMBEDSERVE_LLM_URL)")
    k.add_argument("--llm-model", default=None, help="model name upstream (default: EMBEDSERVE_LLM_MODEL)")
    k.add_argument("--rerank", metavar="MODEL", default=None,
                   help="re-score the dense candidates with a reranker model, or 'maxsim' (multivector)")
    k.add_argument("--candidates", type=int, default=100, help="dense candidates to re-score")
    k.set_defaults(func=cmd_ask)


# -- reading input files --------------------------------------------------------------------------


def read_documents(path: Path) -> Iterator[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix not in TEXT_SUFFIXES | JSONL_SUFFIXES:
        raise InputFileError(f"{path}: unsupported file type {suffix or '(none)'}; use .txt, .md or .jsonl")
    text = decode_utf8(read_bytes(path), str(path))
    if suffix in TEXT_SUFFIXES:
        if text.strip():
            yield {"id": str(path), "text": text, "metadata": {"path": str(path)}}
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:  # JSONDecodeError, or e.g. an integer past Python's digit limit
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise InputFileError(f"{path}:{lineno}: not valid JSON ({reason})") from None
        if not isinstance(obj, dict):
            raise InputFileError(f"{path}:{lineno}: expected an object with a 'text' string")
        if obj.get("text") is not None and not isinstance(obj["text"], str):
            raise InputFileError(f"{path}:{lineno}: 'text' must be a string")
        if obj.get("metadata") is not None and not isinstance(obj["metadata"], dict):
            raise InputFileError(f"{path}:{lineno}: 'metadata' must be an object")
        emb = obj.get("embedding")
        if emb is not None and (not isinstance(emb, list) or not emb or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in emb)):
            raise InputFileError(f"{path}:{lineno}: 'embedding' must be a non-empty list of finite numbers")
        doc_id = obj.get("id")
        body: str = obj.get("text") or ""
        if doc_id is None and not body.strip() and emb is None:
            doc_id = f"{path.name}:{lineno}"  # an empty record is reported by where it is
        doc = {"id": None if doc_id is None else str(doc_id), "text": body, "metadata": obj.get("metadata")}
        if emb is not None:
            doc["embedding"] = emb
        yield doc


# -- verbs ------------------------------------------------------------------------------------------


def _settings() -> Any:
    from embedserve.config import load

    return load()


def cmd_add(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from embedserve.index.collection import Collection

    docs: list[dict[str, Any]] = []
    for f in args.files:
        docs.extend(read_documents(Path(f)))
    if not docs:
        raise InputFileError("no documents found in the files given")
    if args.batch_size < 1:
        raise InputFileError("--batch-size must be at least 1")
    settings = _settings()
    console = Console(stderr=True)
    with Collection.open(
        args.name, settings=settings, model=args.model, chunk_tokens=args.chunk_tokens, overlap=args.overlap
    ) as col:
        if args.multivector:
            from embedserve.index.multivector import enable

            enable(col, args.multivector)
        with Progress(
            TextColumn("[bold]indexing"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[chunks]} chunks"),
            TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal,
        ) as bar:
            task = bar.add_task("add", total=len(docs), chunks=0)
            show = lambda n, c: bar.update(task, completed=n, chunks=c)
            if args.ray is not None:
                try:
                    from embedserve.ray import index_fill
                except ImportError:
                    raise EmbedServeError("--ray needs Ray: pip install 'embedserve[ray]'") from None
                if args.actor_threads < 1:
                    raise InvalidInput(f"--actor-threads must be at least 1, got {args.actor_threads}")
                result = index_fill.add(
                    col, docs, settings, address=args.ray or None, threads=args.actor_threads,
                    batch_size=args.batch_size, progress=show,
                )
            else:
                result = col.add(docs, batch_size=args.batch_size, progress=show)
    empty = ""
    if result.empty:
        shown = ", ".join(result.empty_ids[:10]) + (", ..." if len(result.empty_ids) > 10 else "")
        empty = f", {result.empty} empty skipped (ids: {shown})"
    print(
        f"{args.name}: {result.documents} documents ({result.added} added, {result.updated} updated, "
        f"{result.unchanged} skipped unchanged{empty}), {result.chunks} chunks written in {result.seconds:.2f} s"
    )
    return 0


def _hit_line(rank: int, hit: Any, width: int = 100) -> str:
    snippet = " ".join(hit.text.split())
    if len(snippet) > width:
        snippet = snippet[: width - 3] + "..."
    return f"{rank:>2}. {hit.score:.4f}  {hit.id}  [chunk {hit.chunk.index}: {hit.chunk.start}-{hit.chunk.end}]\n    {snippet}"


def cmd_query(args: argparse.Namespace) -> int:
    from embedserve.index.collection import Collection

    with Collection.open(args.name, settings=_settings(), create=False) as col:
        hits = col.query(args.text, top_k=args.top_k, where=args.where, rerank=args.rerank,
                         candidates=args.candidates)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False))  # type: ignore[union-attr]
    else:
        if not hits:
            print("no results")
        for i, h in enumerate(hits, 1):
            print(_hit_line(i, h))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from embedserve.index.collection import Collection

    infos = Collection.list(_settings())
    if args.json:
        print(json.dumps([i.to_dict() for i in infos]))
        return 0
    if not infos:
        print("no collections")
        return 0
    print(f"{'NAME':<24} {'MODEL':<28} {'DOCS':>8} {'CHUNKS':>8}  CHUNKING")
    for i in infos:
        chunking = f"{i.chunk_tokens} tokens, overlap {i.overlap}" if i.chunk_tokens else "off (truncate)"
        print(f"{i.name:<24} {i.model:<28} {i.documents:>8} {i.chunks:>8}  {chunking}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from embedserve.index.collection import Collection

    with Collection.open(args.name, settings=_settings(), create=False) as col:
        print(json.dumps(col.info().to_dict(), indent=2))
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from embedserve.index.collection import Collection

    Collection.drop(args.name, _settings())
    print(f"deleted collection {args.name}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from embedserve.errors import CollectionError
    from embedserve.index.collection import Collection

    if not args.ids and args.where is None:
        raise CollectionError("index delete needs --ids or --where")
    with Collection.open(args.name, settings=_settings(), create=False) as col:
        n = col.delete(ids=args.ids, where=args.where)
    print(f"deleted {n} document{'s' if n != 1 else ''} from {args.name}")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from embedserve.index.collection import Collection
    from embedserve.index.rag import retrieve, source_id, stream_answer

    settings = _settings()
    with Collection.open(args.name, settings=settings, create=False) as col:
        r = retrieve(col, args.question, top_k=args.top_k, where=args.where, rerank=args.rerank,
                     candidates=args.candidates)
    url = args.llm or settings.llm_url
    if not url:
        print("No LLM configured (--llm URL or EMBEDSERVE_LLM_URL): the retrieved context and the prompt follow.",
              file=sys.stderr)
        print("# Retrieved context")
        for i, h in enumerate(r.hits, 1):
            print(_hit_line(i, h))
        print("\n# Prompt\n" + r.prompt)
        return 0
    model = args.llm_model or settings.llm_model or ""
    for piece in stream_answer(url, model, r.prompt):
        sys.stdout.write(piece)
        sys.stdout.flush()
    print()
    if r.hits:
        print("\nSources: " + ", ".join(source_id(h) for h in r.hits))
    return 0
