"""The OpenAPI 3.1 document served at ``/openapi.json``, built from the routes themselves.

Every route is declared with :func:`route`, which takes its documentation beside its endpoint, so
the document cannot drift from the route table: :func:`document` walks ``app.routes`` and a test
fails for any route that carries no documentation. Schemas are plain JSON Schema (OpenAPI 3.1).
Request schemas describe what a well-formed request looks like; the server answers anything else
with the documented 4xx and error body (schemathesis checks both against a live server in CI).

Error bodies: Ollama-style routes answer ``{"error": "<message>"}`` (:data:`OLLAMA_ERROR`),
``/v1/*`` routes OpenAI's ``{"error": {"message", "type", "param", "code"}}`` (:data:`OPENAI_ERROR`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.routing import BaseRoute, Route

Schema = dict[str, Any]

OLLAMA_ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "minLength": 1}},
}
OPENAI_ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string", "minLength": 1},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

_ERROR_TEXT = {
    400: "Bad request: malformed JSON, a field of the wrong type, or an invalid value",
    401: "Missing, unknown or revoked API key",
    403: "The key may not use this model or route",
    404: "Unknown model or collection",
    413: "Request body or input count over the server's limit",
    429: "A plan limit is reached (Retry-After says when to retry)",
    500: "The pull itself failed (Ollama answers a failed pull with 500)",
    502: "The upstream (LLM or remote server) failed",
    503: "Server busy: the queue is full (Retry-After says when to retry)",
}


def obj(required: Sequence[str] = (), **properties: Schema) -> Schema:
    """A JSON object schema; unknown fields are allowed (clients send extra fields)."""
    out: Schema = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    return out


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
ANY_OBJ: Schema = {"type": "object"}
MODEL: Schema = {"type": "string", "examples": ["all-minilm"], "description": "model name[:tag]"}
TEXT: Schema = {"type": "string", "examples": ["Why is the sky blue?"]}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


@dataclass(frozen=True)
class Op:
    """One operation's documentation: what it does, what it takes, what it answers."""

    summary: str
    body: Schema | None = None  # JSON request body (None: no body)
    ok: Schema | None = None  # JSON 200 body (None: see ``ok_media``)
    ok_media: Mapping[str, Schema] = field(default_factory=dict)  # other 200 media types
    ok_status: int = 200
    errors: Iterable[int] = (400,)
    tags: Sequence[str] = ()
    openai: bool = False  # errors in OpenAI's shape


class DocumentedRoute(Route):
    """A Starlette route that carries its OpenAPI operations (one per method)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], methods: Sequence[str], doc: Op) -> None:
        super().__init__(path, endpoint, methods=list(methods))
        self.doc = doc


def route(path: str, endpoint: Callable[..., Any], methods: Sequence[str], doc: Op) -> DocumentedRoute:
    return DocumentedRoute(path, endpoint, methods, doc)


def _operation(method: str, path: str, doc: Op, extra_errors: Iterable[int]) -> Schema:
    error_schema = OPENAI_ERROR if doc.openai else OLLAMA_ERROR
    responses: dict[str, Any] = {}
    if method == "head":
        responses[str(doc.ok_status)] = {"description": "Headers only"}
    else:
        content: dict[str, Any] = {}
        if doc.ok is not None:
            content["application/json"] = {"schema": doc.ok}
        for media, schema in doc.ok_media.items():
            content[media] = {"schema": schema}
        responses[str(doc.ok_status)] = {"description": "Success", **({"content": content} if content else {})}
    for status in sorted({*doc.errors, *extra_errors}):
        answer: dict[str, Any] = {"description": _ERROR_TEXT.get(status, "Error")}
        if method != "head":
            answer["content"] = {"application/json": {"schema": error_schema}}
        responses[str(status)] = answer
    op: Schema = {
        "operationId": f"{method}_{path.lstrip('/').replace('/', '_').replace('{', '').replace('}', '') or 'root'}",
        "summary": doc.summary,
        "responses": responses,
    }
    if doc.tags:
        op["tags"] = list(doc.tags)
    params = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for p in _path_params(path)
    ]
    if params:
        op["parameters"] = params
    if doc.body is not None and method not in ("get", "head"):
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": doc.body}}}
    return op


def _path_params(path: str) -> list[str]:
    names = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            names.append(part[1:-1].split(":", 1)[0])
    return names


def _openapi_path(path: str) -> str:
    """Starlette's ``{model:path}`` becomes OpenAPI's ``{model}``."""
    return "/".join(
        "{" + p[1:-1].split(":", 1)[0] + "}" if p.startswith("{") and p.endswith("}") else p
        for p in path.split("/")
    )


def undocumented(routes: Iterable[BaseRoute]) -> list[str]:
    """Routes that carry no documentation (the test over the app's route table uses this)."""
    return [
        getattr(r, "path", repr(r))
        for r in routes
        if isinstance(r, Route) and not isinstance(r, DocumentedRoute)
    ]


def document(
    routes: Iterable[BaseRoute],
    *,
    version: str,
    extra_errors: Callable[[str, str], Iterable[int]] = lambda path, method: (),
) -> Schema:
    """The OpenAPI document of ``routes``; ``extra_errors(path, method)`` adds statuses that a
    middleware can answer on that route (auth's 401/403/429, admission's 503)."""
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        if not isinstance(r, DocumentedRoute):
            continue
        entry = paths.setdefault(_openapi_path(r.path), {})
        for method in sorted(r.methods or ()):
            m = method.lower()
            entry[m] = _operation(m, r.path, r.doc, extra_errors(r.path, m))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "embedserve",
            "version": version,
            "description": "Ollama- and OpenAI-compatible embedding server, collections and RAG.",
        },
        "paths": dict(sorted(paths.items())),
    }
