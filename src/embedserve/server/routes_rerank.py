"""Reranking and token embeddings over HTTP: ``POST /v1/rerank``, ``POST /rerank``, ``POST /embed_all``.

* ``/v1/rerank`` — the Cohere / Jina shape: ``{model, query, documents: [str | {"text": str}],
  top_n?, return_documents? (default true)}`` -> ``{model, results: [{index, relevance_score,
  document?: {"text"}}], usage: {total_tokens}}``, best first. Errors in OpenAI's ``/v1`` shape.
* ``/rerank`` — TEI's shape: ``{model, query, texts: [str], raw_scores?, return_text?,
  truncate?}`` -> ``[{index, score, text?}]``, best first (``raw_scores``: logits, not the
  model's activation).
* ``/embed_all`` — token embeddings, TEI's name and shape: ``{model, inputs: str | [str],
  truncate?, normalize? (default true), role?: "query" | "document"}`` -> one ``[[float]]``
  (tokens x dim) per input. Specials are dropped for a sentence-transformers model; a ColBERT
  model returns what it scores with (``role="query"``: [Q] marker and [MASK] expansion).

A cross-encoder's pairs and the token requests go through the model's batcher with the same
queue, limits and token budget as ``/api/embed``; a ColBERT model reranks by MaxSim of the query's
token vectors against each document's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from embedserve.engine.crossencoder import activate
from embedserve.late_interaction import maxsim_batch
from embedserve.server.body import get_bool, get_int, get_str, read_json
from embedserve.server.errors import HTTPError
from embedserve.server.openapi import ANY_OBJ, BOOL, INT, MODEL, NUM, STR, Op, array, obj, route
from embedserve.server.openapi import TEXT as TEXT_SCHEMA
from embedserve.server.responses import JSON
from embedserve.server.state import ServerState, check_count, check_name, embed_texts
from embedserve.vectors import l2_normalize


def _state(request: Request) -> ServerState:
    return request.app.state.embedserve  # type: ignore[no-any-return]


def _not_found(name: str) -> str:
    return f'model "{name}" not found, try pulling it first'


def _documents(value: Any, key: str) -> list[str]:
    if not isinstance(value, list):
        raise HTTPError(400, f"{key} must be a list of strings or of objects with a text field")
    out = []
    for i, doc in enumerate(value):
        if isinstance(doc, dict):
            doc = doc.get("text")
        if not isinstance(doc, str):
            raise HTTPError(400, f"{key}[{i}] must be a string or an object with a string text")
        out.append(doc)
    return out


async def _kind(state: ServerState, name: str) -> str:
    """The resident engine's kind (loading the model if needed)."""
    async with state.manager.use(name) as resident:
        assert resident.engine is not None
        return str(getattr(resident.engine.info, "kind", "embedding"))


async def score_documents(
    state: ServerState, request: Request, name: str, query: str, docs: list[str], *,
    truncate: bool, raw: bool,
) -> tuple[np.ndarray, int]:
    """One score per document through the model's batcher, and the tokens it took."""
    check_count(state, len(docs) + 1)
    try:
        kind = await _kind(state, name)
    except Exception:  # noqa: BLE001 - embed_texts answers the error in the route's own words
        kind = ""
    if kind == "embedding":
        raise HTTPError(400, f'"{name}" does not support rerank')
    if kind == "colbert":
        q = await embed_texts(state, name, [query], truncate=truncate, not_found=_not_found(name),
                              client=request, mode="query_tokens")
        d = await embed_texts(state, name, docs, truncate=truncate, not_found=_not_found(name),
                              client=request, mode="tokens")
        scores = maxsim_batch(_unit(q.vectors[0]), [_unit(v) for v in d.vectors])
        return scores, q.tokens + d.tokens
    result = await embed_texts(state, name, [(query, d) for d in docs], truncate=truncate,
                               not_found=_not_found(name), client=request, mode="pairs")
    logits = np.asarray(result.vectors, np.float32).reshape(-1)
    if raw:
        return logits, result.tokens
    async with state.manager.use(name) as resident:
        activation = getattr(resident.engine, "activation", "identity")
    return activate(logits, activation), result.tokens


def _unit(v: np.ndarray) -> np.ndarray:
    return l2_normalize(v) if len(v) else v


def _order(scores: np.ndarray, top_n: int | None) -> list[int]:
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    return [int(i) for i in (order if top_n is None else order[:top_n])]


async def _rerank_request(
    request: Request, field: str
) -> tuple[Any, dict[str, Any], str, str, list[str]]:
    """What both rerank shapes share: (state, body, model, query, documents from ``field``)."""
    state = _state(request)
    body = await read_json(request, state.settings.max_body_bytes, "RerankRequest")
    name = get_str(body, "model", "RerankRequest")
    if not name.strip():
        raise HTTPError(400, "model is required")
    check_name(name, not_found=_not_found(name))
    query = body.get("query")
    if not isinstance(query, str) or not query:
        raise HTTPError(400, "query must be a non-empty string")
    if field not in body:
        raise HTTPError(400, f"{field} is required")
    return state, body, name, query, _documents(body.get(field), field)


async def rerank_v1(request: Request) -> Response:
    state, body, name, query, docs = await _rerank_request(request, "documents")
    top_n = body.get("top_n")
    if top_n is not None:
        top_n = get_int(body, "top_n", "RerankRequest")
        if top_n < 1:
            raise HTTPError(400, f"top_n must be at least 1, got {top_n}")
    return_documents = get_bool(body, "return_documents", "RerankRequest", True)
    truncate = get_bool(body, "truncate", "RerankRequest", True)
    if not docs:
        return JSON({"model": name, "results": [], "usage": {"total_tokens": 0}})
    scores, tokens = await score_documents(state, request, name, query, docs, truncate=truncate,
                                           raw=False)
    results = []
    for i in _order(scores, top_n):
        entry: dict[str, Any] = {"index": i, "relevance_score": float(scores[i])}
        if return_documents:
            entry["document"] = {"text": docs[i]}
        results.append(entry)
    return JSON({"model": name, "results": results,
                 "usage": {"total_tokens": tokens, "prompt_tokens": tokens}})


async def rerank_tei(request: Request) -> Response:
    state, body, name, query, docs = await _rerank_request(request, "texts")
    raw = get_bool(body, "raw_scores", "RerankRequest", False)
    return_text = get_bool(body, "return_text", "RerankRequest", False)
    truncate = get_bool(body, "truncate", "RerankRequest", True)
    if not docs:
        return JSON([])
    scores, _ = await score_documents(state, request, name, query, docs, truncate=truncate, raw=raw)
    out = []
    for i in _order(scores, None):
        entry: dict[str, Any] = {"index": i, "score": float(scores[i])}
        if return_text:
            entry["text"] = docs[i]
        out.append(entry)
    return JSON(out)


async def embed_all(request: Request) -> Response:
    state = _state(request)
    body = await read_json(request, state.settings.max_body_bytes, "EmbedAllRequest")
    name = get_str(body, "model", "EmbedAllRequest")
    if not name.strip():
        raise HTTPError(400, "model is required")
    check_name(name, not_found=_not_found(name))
    inputs = body.get("inputs")
    if isinstance(inputs, str):
        texts = [inputs]
    elif isinstance(inputs, list) and all(isinstance(t, str) for t in inputs):
        texts = inputs
    else:
        raise HTTPError(400, "inputs must be a string or a list of strings")
    truncate = get_bool(body, "truncate", "EmbedAllRequest", True)
    normalize = get_bool(body, "normalize", "EmbedAllRequest", True)
    role = get_str(body, "role", "EmbedAllRequest", "document")
    if role not in ("query", "document"):
        raise HTTPError(400, f"role must be 'query' or 'document', got {role!r}")
    check_count(state, len(texts))
    result = await embed_texts(state, name, texts, truncate=truncate, not_found=_not_found(name),
                               client=request, mode="query_tokens" if role == "query" else "tokens")
    out = [(_unit(v) if normalize else v) for v in (result.vectors if texts else [])]
    for v in out:
        if not np.isfinite(v).all():
            raise HTTPError(400, "embedding contains NaN or Inf values")
    return JSON(out)


_DOC = {"oneOf": [TEXT_SCHEMA, obj(["text"], text=TEXT_SCHEMA)]}
_TOKENS = array(array(array(NUM)))
ROUTES = [
    route("/v1/rerank", rerank_v1, ["POST"], Op(
        "Rerank documents against a query (Cohere / Jina shape)",
        body=obj(["model", "query", "documents"], model=MODEL, query=TEXT_SCHEMA,
                 documents=array(_DOC), top_n=INT, return_documents=BOOL, truncate=BOOL),
        ok=obj(["model", "results"], model=STR, usage=ANY_OBJ, results=array(obj(
            ["index", "relevance_score"], index=INT, relevance_score=NUM,
            document=obj(["text"], text=STR)))),
        errors=(400, 404, 413), tags=("rerank",), openai=True)),
    route("/rerank", rerank_tei, ["POST"], Op(
        "Rerank texts against a query (TEI shape)",
        body=obj(["model", "query", "texts"], model=MODEL, query=TEXT_SCHEMA, texts=array(TEXT_SCHEMA),
                 raw_scores=BOOL, return_text=BOOL, truncate=BOOL),
        ok=array(obj(["index", "score"], index=INT, score=NUM, text=STR)),
        errors=(400, 404, 413), tags=("rerank",))),
    route("/embed_all", embed_all, ["POST"], Op(
        "Token embeddings: one (tokens x dim) array per input (TEI's route name)",
        body=obj(["model", "inputs"], model=MODEL, inputs={"oneOf": [TEXT_SCHEMA, array(TEXT_SCHEMA)]},
                 truncate=BOOL, normalize=BOOL, role={"enum": ["query", "document"]}),
        ok=_TOKENS, errors=(400, 404, 413), tags=("rerank",))),
]
