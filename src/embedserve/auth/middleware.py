"""The auth middleware: every request but the public ones needs ``Authorization: Bearer <key>``.

Per request, before any route runs:

1. public routes (``GET|HEAD /``, ``/api/version``, ``/health``) and CORS preflights pass;
2. the key is looked up (401: missing, unknown or revoked; Ollama routes answer
   ``{"error": "unauthorized"}``, ``/v1/*`` OpenAI's error shape);
3. admin routes (``/metrics``, pull/delete/copy/create/push, collections) need an admin plan (403);
4. requests per minute (429);
5. for a route naming a model, the model must match the key's patterns (403); for a route that runs
   one (``/api/embed``, ``/api/embeddings``, ``/v1/embeddings``) the service admits it against the
   plan (concurrent models, per-request inputs, session and weekly budget: 400/429) and the ticket
   rides in the scope, where the embed path reports the compute the engine spent;
6. model listings (``/api/tags``, ``/api/ps``, ``/v1/models``) show a key with ``--models``
   patterns only the models it may use (``auth/listings.py``).

The key never leaves this module: not in the scope, a log line, or a response.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from embedserve.auth.listings import LISTINGS, filtered
from embedserve.auth.service import AuthService, Principal
from embedserve.errors import (
    AuthError,
    Forbidden,
    InvalidModelName,
    LimitExceeded,
    TooManyInputs,
    Unauthorized,
)
from embedserve.server.peek import model_field, peek_json
from embedserve.server.state import USAGE_KEY
from embedserve.store.names import canonical

PRINCIPAL_KEY = "embedserve.principal"

_PUBLIC = {
    ("GET", "/"),
    ("HEAD", "/"),
    ("GET", "/api/version"),
    ("HEAD", "/api/version"),
    ("GET", "/health"),
    ("HEAD", "/health"),
}


def is_public(method: str, path: str) -> bool:
    """Routes that answer without a key (the OpenAPI document leaves 401/403/429 off them): the
    fixed set, and the playground's static files (its API calls carry the user's key)."""
    method = method.upper()
    if (method, path) in _PUBLIC:
        return True
    return method in ("GET", "HEAD") and (path == "/ui" or path.startswith("/ui/"))


_ADMIN_PATHS = (
    "/metrics",
    "/api/pull",
    "/api/delete",
    "/api/copy",
    "/api/create",
    "/api/push",
    "/api/blobs",
    "/api/collections",
)
# routes that run a model: path -> (model field, input field)
_RUNS = {"/api/embed": "input", "/api/embeddings": "prompt", "/v1/embeddings": "input"}
_NAMES = {"/api/show"}


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def _count(value: Any, field: str) -> int:
    if isinstance(value, list):
        return len(value)
    if field == "input" and value == "":
        return 0
    return 1 if value is not None else 0


def _openai_error(status: int, exc: Exception) -> dict[str, Any]:
    if isinstance(exc, Unauthorized):
        message = (
            "You didn't provide a valid API key. Send it in an Authorization header using Bearer "
            "auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        kind, code = "invalid_request_error", "invalid_api_key"
    elif isinstance(exc, LimitExceeded):
        message = str(exc)
        if exc.limit in ("session", "weekly"):
            kind, code = "insufficient_quota", "insufficient_quota"
        else:
            kind, code = "requests", "rate_limit_exceeded"
    else:
        message, kind, code = str(exc), "invalid_request_error", "model_not_allowed"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _status(exc: AuthError | TooManyInputs) -> int:
    if isinstance(exc, Unauthorized):
        return 401
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, LimitExceeded):
        return 429
    return 400


async def _refuse(scope: Scope, send: Send, exc: AuthError | TooManyInputs) -> None:
    status = _status(exc)
    openai = scope["path"].startswith("/v1/")
    if openai and isinstance(exc, TooManyInputs):
        body: Any = {
            "error": {
                "message": str(exc),
                "type": "invalid_request_error",
                "param": "input",
                "code": None,
            }
        }
    elif openai:
        body = _openai_error(status, exc)
    else:
        body = {"error": "unauthorized" if status == 401 else str(exc)}
    payload = orjson.dumps(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if isinstance(exc, LimitExceeded):
        headers.append((b"retry-after", str(max(1, math.ceil(exc.retry_after))).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class AuthMiddleware:
    def __init__(self, app: ASGIApp, *, service: AuthService, max_body_bytes: int) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if method == "OPTIONS" or is_public(method, path):
            await self.app(scope, receive, send)
            return
        service = self.service
        try:
            principal = await service.authenticate(_bearer(scope))
            if path.startswith(_ADMIN_PATHS) and not principal.plan.admin:
                raise Forbidden("this route needs an admin key")
            service.check_rate(principal)
            scope[PRINCIPAL_KEY] = principal
            ticket = None
            if method == "POST" and (path in _RUNS or path in _NAMES):
                body, receive = await peek_json(scope, receive, self.max_body_bytes)
                ticket = self._admit(principal, path, body)
            elif method == "GET" and path.startswith("/v1/models/"):
                self._check_model(principal, path[len("/v1/models/") :])
        except (AuthError, TooManyInputs) as exc:
            await _refuse(scope, send, exc)
            return
        if ticket is None:
            if method == "GET" and path in LISTINGS and principal.record.models:
                await filtered(self.app, scope, receive, send, principal.allows)
            else:
                await self.app(scope, receive, send)
            return
        scope[USAGE_KEY] = ticket
        try:
            await self.app(scope, receive, send)
        finally:
            ticket.release()

    def _check_model(self, principal: Principal, name: str) -> str | None:
        try:
            model = canonical(name)
        except InvalidModelName:  # the route answers it
            return None
        if not principal.allows(model):
            raise Forbidden(f"this key may not use model '{model}'")
        return model

    def _admit(self, principal: Principal, path: str, body: Any) -> Any:
        name = model_field(body, "model", "name")
        if name is None:
            return None  # the route answers the missing model
        model = self._check_model(principal, name)
        if model is None or path not in _RUNS:
            return None
        field = _RUNS[path]
        return self.service.admit(principal, model, _count(body.get(field), field))
