"""``/api/collections``: persistent collections and RAG over HTTP.

Embedding goes through the server's model manager and batcher (:class:`ManagedEncoder`), so the
collections share loaded models, batching and keep_alive with ``/api/embed``. SQLite work runs in
the store thread pool. Errors answer ``{"error": "..."}``: 400 for a bad request or filter, 404 for
an unknown collection or model, 502 for a failing LLM upstream.

The LLM upstream for ``/ask`` is only the configured one (``EMBEDSERVE_LLM_URL``): a request body
cannot point the server at another URL.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from embedserve.cache import EmbeddingCache
from embedserve.cache.serve import embed_cached
from embedserve.config import DEFAULT_MODEL, Settings
from embedserve.errors import (
    CollectionError,
    CollectionNotFound,
    InvalidInput,
    TooManyInputs,
    UpstreamError,
)
from embedserve.index.collection import Collection, check_name, model_key
from embedserve.prompts import apply, model_prefix
from embedserve.server.body import read_json
from embedserve.server.errors import status_and_message
from embedserve.server.openapi import (
    ANY_OBJ,
    BOOL,
    INT,
    MODEL,
    NUM,
    STR,
    TEXT,
    Op,
    Schema,
    array,
    obj,
    route,
)
from embedserve.server.responses import JSON
from embedserve.server.state import ServerState
from embedserve.vectors import l2_normalize

_ENCODE_PIECE = 256  # texts per batcher submission, to stay well inside the queue


class ManagedEncoder:
    """The index's encoder protocol over a resident model: called from a worker thread, it hands
    texts to the model's batcher on the event loop and waits for the vectors."""

    def __init__(
        self, resident: Any, loop: asyncio.AbstractEventLoop, cache: EmbeddingCache | None = None
    ) -> None:
        self._engine = resident.engine
        self._batcher = resident.batcher
        self._loop = loop
        self._cache = cache
        self.info = resident.engine.info

    async def _submit(self, texts: list[str], mode: str = "embed") -> Any:
        if mode != "embed":  # token vectors: straight to the batcher, not the embedding cache
            return await self._batcher.submit(texts, True, mode=mode)
        return await embed_cached(self._cache, self._batcher, self.info, texts)

    def encode(
        self,
        texts: list[str],
        output: str = "sentence",
        role: str = "document",
        prompt_name: str | None = None,
        **_: Any,
    ) -> Any:
        """As ``Embedder.encode``: the model's prompt (``prompt_name``, else its default) before
        each text for sentence vectors, none for token vectors; unit vectors either way."""
        import numpy as np

        if output == "token":  # multivector collections: token vectors through the same batcher
            mode = "query_tokens" if role == "query" else "tokens"
            fut = asyncio.run_coroutine_threadsafe(self._submit(list(texts), mode), self._loop)
            return [l2_normalize(v) if len(v) else v for v in fut.result()[0]]
        texts = apply(model_prefix(self.info, prompt_name=prompt_name), list(texts))
        out = []
        for i in range(0, len(texts), _ENCODE_PIECE):
            fut = asyncio.run_coroutine_threadsafe(self._submit(list(texts[i : i + _ENCODE_PIECE])), self._loop)
            vectors, _tokens = fut.result()
            out.append(vectors)
        return l2_normalize(np.concatenate(out)) if out else np.zeros((0, self.info.dim), np.float32)

    def encode_with_tokens(
        self, texts: list[str], prompt_name: str | None = None, **_: Any
    ) -> tuple[Any, list[Any]]:
        """As ``Embedder.encode_with_tokens``: sentence and token vectors of documents from one
        run of the model per batch (the batcher's ``dense_tokens`` mode), unless a prompt makes
        their inputs differ. (The sentence vectors are not written to the embedding cache.)"""
        import numpy as np

        info = self.info
        if model_prefix(info, prompt_name=prompt_name) or not callable(getattr(self._engine, "embed_both", None)):
            return self.encode(texts, prompt_name=prompt_name), self.encode(texts, output="token")
        pairs: list[Any] = []
        for i in range(0, len(texts), _ENCODE_PIECE):
            piece = list(texts[i : i + _ENCODE_PIECE])
            fut = asyncio.run_coroutine_threadsafe(self._submit(piece, "dense_tokens"), self._loop)
            pairs.extend(fut.result()[0])
        dense = np.stack([p for p, _ in pairs]) if pairs else np.zeros((0, info.dim), np.float32)
        return l2_normalize(dense), [l2_normalize(t) if len(t) else t for _, t in pairs]

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return self._engine.token_spans(text)  # type: ignore[no-any-return]


def _refuse_direct_load(model: str, settings: Settings) -> Any:
    raise RuntimeError("server collections embed through the model manager only")


class Registry:
    """Open collections by name (one SQLite connection and cached matrix each)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._open: dict[str, Collection] = {}

    def find(self, name: str) -> Collection | None:
        check_name(name)
        with self._lock:
            col = self._open.get(name)
            if col is not None:
                row = col._store.get_collection(name)
                if row is None or row.id != col._row.id:  # dropped (or dropped and re-created)
                    self._open.pop(name).close()
                    col = None
            if col is None:
                try:
                    col = Collection.open(name, settings=self.settings, create=False,
                                          encoder_factory=_refuse_direct_load)
                except CollectionNotFound:
                    return None
                self._open[name] = col
            return col

    def get(self, name: str) -> Collection:
        col = self.find(name)
        if col is None:
            raise CollectionNotFound(f"collection {name!r} not found")
        return col

    def create(self, name: str, encoder: ManagedEncoder, model: str | None, chunk_tokens: int | None,
               overlap: int | None) -> Collection:
        with self._lock:
            col = Collection.open(name, settings=self.settings, encoder=encoder, model=model,
                                  chunk_tokens=chunk_tokens, overlap=overlap, encoder_factory=_refuse_direct_load)
            col._encoder = None  # the resident model is released after the request
            old = self._open.pop(name, None)
            if old is not None:
                old.close()
            self._open[name] = col
            return col

    def drop(self, name: str) -> None:
        with self._lock:
            old = self._open.pop(name, None)
            if old is not None:
                old.close()
        Collection.drop(name, self.settings)


def _state(request: Request) -> ServerState:
    return request.app.state.embedserve  # type: ignore[no-any-return]


def _registry(request: Request) -> Registry:
    app_state = request.app.state
    reg = getattr(app_state, "collections", None)
    if reg is None:
        reg = Registry(_state(request).settings)
        app_state.collections = reg
    return reg  # type: ignore[no-any-return]


def _opt(body: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise InvalidInput(f"{key!r} must be {what}")
    return value


def _top_k(body: dict[str, Any], default: int) -> int:
    value = _opt(body, "top_k", int, "a positive integer")
    if value is None:
        return default
    if value < 1:
        raise InvalidInput(f"'top_k' must be a positive integer, got {value}")
    return int(value)


async def _body(request: Request) -> dict[str, Any]:
    return await read_json(request, _state(request).settings.max_body_bytes, "CollectionRequest")


async def _with_encoder(request: Request, model: str, fn: Any, *args: Any) -> Any:
    state = _state(request)
    async with state.manager.use(model) as resident:
        enc = ManagedEncoder(resident, asyncio.get_running_loop(), state.cache)
        return await state.in_io(fn, enc, *args)


# -- collections ------------------------------------------------------------------------------------


async def create_collection(request: Request) -> Response:
    body = await _body(request)
    name = _opt(body, "name", str, "a string")
    if not name:
        raise InvalidInput("'name' is required")
    check_name(name)
    model = _opt(body, "model", str, "a string")
    ct = _opt(body, "chunk_tokens", int, "an integer (0 = off)")
    ov = _opt(body, "overlap", int, "an integer")
    reg = _registry(request)
    state = _state(request)
    existing = await state.in_io(reg.find, name)
    if existing is not None and model and model_key(model) != existing.model:
        raise CollectionError(f"collection {name!r} uses model {existing.model}, not {model_key(model)}")
    model = model or (existing.model if existing else DEFAULT_MODEL)
    col = await _with_encoder(request, model, lambda enc: reg.create(name, enc, model, ct, ov))
    info = await state.in_io(col.info)
    return JSON(info.to_dict(), status_code=200 if existing else 201)


async def list_collections(request: Request) -> Response:
    settings = _state(request).settings
    infos = await _state(request).in_io(Collection.list, settings)
    return JSON({"collections": [i.to_dict() for i in infos]})


async def get_collection(request: Request) -> Response:
    name = request.path_params["name"]
    col = await _state(request).in_io(_registry(request).get, name)
    return JSON((await _state(request).in_io(col.info)).to_dict())


async def delete_collection(request: Request) -> Response:
    name = request.path_params["name"]
    await _state(request).in_io(_registry(request).drop, name)
    return JSON({"deleted": name})


# -- documents --------------------------------------------------------------------------------------


async def add_documents(request: Request) -> Response:
    name = request.path_params["name"]
    body = await _body(request)
    docs = body.get("documents")
    if not isinstance(docs, list) or not docs:
        raise InvalidInput("'documents' must be a non-empty list of {id?, text, metadata?}")
    state = _state(request)
    if len(docs) > state.settings.max_inputs:
        raise TooManyInputs(len(docs), state.settings.max_inputs)
    reg = _registry(request)
    col = await state.in_io(reg.find, name)
    model = col.model if col is not None else DEFAULT_MODEL

    def work(enc: ManagedEncoder) -> dict[str, Any]:
        c = col if col is not None else reg.create(name, enc, None, None, None)
        return c.add(docs, encoder=enc).to_dict()

    result = await _with_encoder(request, model, work)
    return JSON({"collection": name, **result})


async def delete_documents(request: Request) -> Response:
    name = request.path_params["name"]
    body = await _body(request)
    ids = body.get("ids")
    where = body.get("where")
    if ids is None and where is None:
        raise InvalidInput("give 'ids' (a list of strings) or 'where' (a filter)")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise InvalidInput("'ids' must be a list of strings")
    state = _state(request)
    col = await state.in_io(_registry(request).get, name)
    n = await state.in_io(lambda: col.delete(ids=ids, where=where))
    return JSON({"deleted": n})


async def query(request: Request) -> Response:
    name = request.path_params["name"]
    body = await _body(request)
    text, texts = body.get("query"), body.get("queries")
    if (text is None) == (texts is None):
        raise InvalidInput("give exactly one of 'query' (a string) or 'queries' (a list of strings)")
    if text is not None and not isinstance(text, str):
        raise InvalidInput("'query' must be a string")
    if texts is not None and (not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts)):
        raise InvalidInput("'queries' must be a non-empty list of strings")
    top_k = _top_k(body, 10)
    where = body.get("where")
    state = _state(request)
    if texts is not None and len(texts) > state.settings.max_inputs:
        raise TooManyInputs(len(texts), state.settings.max_inputs)
    col = await state.in_io(_registry(request).get, name)
    from embedserve.index.filters import compile_where

    compile_where(where)  # 400 before loading a model
    rerank, candidates = body.get("rerank"), body.get("candidates", 100)
    res = await _with_encoder(request, col.model, lambda enc: col.query(text if texts is None else texts,
                                                                         top_k=top_k, where=where, encoder=enc,
                                                                         rerank=rerank, candidates=candidates))
    if texts is None:
        return JSON({"results": [h.to_dict() for h in res]})
    return JSON({"results": [[h.to_dict() for h in hs] for hs in res]})


async def ask(request: Request) -> Response:
    from embedserve.index.rag import retrieve, stream_answer

    name = request.path_params["name"]
    body = await _body(request)
    question = body.get("question", body.get("query"))
    if not isinstance(question, str) or not question.strip():
        raise InvalidInput("'question' must be a non-empty string")
    top_k = _top_k(body, 4)
    stream = body.get("stream", True)
    state = _state(request)
    col = await state.in_io(_registry(request).get, name)
    r = await _with_encoder(request, col.model,
                            lambda enc: retrieve(col, question, top_k=top_k, where=body.get("where"), encoder=enc))
    sources = r.sources()
    url = state.settings.llm_url
    if not url:
        return JSON({"answer": None, "prompt": r.prompt, "sources": sources,
                     "note": "no LLM configured (EMBEDSERVE_LLM_URL): returning the context and the prompt"})
    llm_model = _opt(body, "llm_model", str, "a string") or state.settings.llm_model or ""
    pieces = stream_answer(url, llm_model, r.prompt)
    loop = asyncio.get_running_loop()
    first = await loop.run_in_executor(state.io_executor, lambda: next(pieces, None))  # 502 before any byte
    if not stream:
        rest = await loop.run_in_executor(state.io_executor, lambda: "".join(pieces))
        return JSON({"answer": (first or "") + rest, "prompt": r.prompt, "sources": sources})

    def lines() -> Iterator[bytes]:
        if first:
            yield orjson.dumps({"response": first, "done": False}) + b"\n"
        try:
            for piece in pieces:
                yield orjson.dumps({"response": piece, "done": False}) + b"\n"
        except UpstreamError as exc:
            yield orjson.dumps({"error": status_and_message(exc)[1]}) + b"\n"
            return
        yield orjson.dumps({"response": "", "done": True, "sources": sources}) + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


_WHERE: Schema = {"type": "object", "description": "a Chroma-style metadata filter"}
_INFO = obj(["name", "model", "dim", "documents", "chunks"], name=STR, model=STR, digest=STR, dim=INT,
            max_tokens=INT, chunk_tokens=INT, overlap=INT, documents=INT, chunks=INT)
_HIT = obj(["id", "score"], id=STR, score=NUM, text=STR, metadata=ANY_OBJ, chunk=ANY_OBJ)
_DOC = obj(["text"], id=STR, text=TEXT, metadata=ANY_OBJ)
_TAGS = ["collections"]

ROUTES = [
    route("/api/collections", create_collection, ["POST"], Op(
        "Create (or open) a collection", ok_status=201, ok=_INFO,
        body=obj(["name"], name={"type": "string", "examples": ["notes"]}, model=MODEL, chunk_tokens=INT, overlap=INT),
        errors=(200, 400, 404, 413, 503), tags=_TAGS)),
    route("/api/collections", list_collections, ["GET"], Op(
        "List collections", ok=obj(["collections"], collections=array(_INFO)), errors=(), tags=_TAGS)),
    route("/api/collections/{name}", get_collection, ["GET"], Op(
        "A collection's details", ok=_INFO, errors=(400, 404), tags=_TAGS)),
    route("/api/collections/{name}", delete_collection, ["DELETE"], Op(
        "Delete a collection", ok=obj(["deleted"], deleted=STR), errors=(400, 404), tags=_TAGS)),
    route("/api/collections/{name}/documents", add_documents, ["POST"], Op(
        "Add or update documents (chunked and embedded)", body=obj(["documents"], documents=array(_DOC)),
        ok=obj(["collection"], collection=STR, added=INT, updated=INT, unchanged=INT, chunks=INT),
        errors=(400, 404, 413, 503), tags=_TAGS)),
    route("/api/collections/{name}/documents", delete_documents, ["DELETE"], Op(
        "Delete documents by id or filter", body=obj(ids=array(STR), where=_WHERE),
        ok=obj(["deleted"], deleted=INT), errors=(400, 404, 413), tags=_TAGS)),
    route("/api/collections/{name}/query", query, ["POST"], Op(
        "Semantic search", body=obj(query=TEXT, queries=array(TEXT), top_k=INT, where=_WHERE),
        ok=obj(["results"], results={"anyOf": [array(_HIT), array(array(_HIT))]}),
        errors=(400, 404, 413, 503), tags=_TAGS)),
    route("/api/collections/{name}/ask", ask, ["POST"], Op(
        "Retrieve, then answer with the configured LLM (NDJSON stream unless stream is false)",
        body=obj(["question"], question=STR, top_k=INT, where=_WHERE, stream=BOOL, llm_model=STR),
        ok=ANY_OBJ, ok_media={"application/x-ndjson": STR}, errors=(400, 404, 413, 502, 503), tags=_TAGS)),
]
