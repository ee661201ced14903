"""The one table that turns exceptions into HTTP statuses and bodies.

Native routes answer ``{"error": "<message>"}``; ``/v1/*`` routes answer OpenAI's
``{"error": {"message", "type", "param", "code"}}``. Route-specific Ollama texts (``model "x" not
found, try pulling it first``...) are raised as :class:`HTTPError`, which carries its own status.
Anything not in the table is a bug and becomes a 500 with a generic message (logged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from embedserve.errors import (
    CollectionNotFound,
    EmbedServeError,
    EngineError,
    InputTooLong,
    InvalidModelName,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
    StoreError,
    UpstreamError,
    UserError,
)
from embedserve.service.batcher import OVERLOADED_MESSAGE

log = logging.getLogger("embedserve.server")

INPUT_TOO_LONG_MESSAGE = "the input length exceeds the context length"


class HTTPError(Exception):
    """An error with an exact status and message chosen by a route (Ollama's per-route texts)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# Most specific first: the first class the exception is an instance of wins.
_TABLE: tuple[tuple[type[BaseException], int, Callable[[BaseException], str]], ...] = (
    (InputTooLong, 400, lambda e: INPUT_TOO_LONG_MESSAGE),
    (InvalidModelName, 400, lambda e: "invalid model name"),
    (CollectionNotFound, 404, str),
    (ModelNotFound, 404, str),
    (PayloadTooLarge, 413, str),
    (UserError, 400, str),  # InvalidInput, TooManyInputs, CollectionError, InputFileError
    (Overloaded, 503, lambda e: OVERLOADED_MESSAGE),
    (UpstreamError, 502, str),
    (StoreError, 500, str),  # CorruptModel, PullError
    (EngineError, 500, str),
    (EmbedServeError, 500, str),
)

_OPENAI_TYPES = {400: "invalid_request_error", 404: "not_found_error"}


OVERLOAD_BODY_OLLAMA = orjson.dumps({"error": OVERLOADED_MESSAGE})
OVERLOAD_BODY_OPENAI = orjson.dumps(
    {"error": {"message": OVERLOADED_MESSAGE, "type": "api_error", "param": None, "code": None}}
)


def status_and_message(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, HTTPError):
        return exc.status, exc.message
    for cls, status, message in _TABLE:
        if isinstance(exc, cls):
            return status, message(exc) or type(exc).__name__
    return 500, "internal server error"


def _json(body: object, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _retry(status: int) -> dict[str, str] | None:
    return {"Retry-After": "1"} if status == 503 else None  # a full queue drains in about a second


def ollama_body(status: int, message: str) -> Response:
    return _json({"error": message}, status, _retry(status))


def openai_body(status: int, message: str) -> Response:
    kind = _OPENAI_TYPES.get(status, "api_error")
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return _json(body, status, _retry(status))


def is_openai_path(path: str) -> bool:
    return path.startswith("/v1/")


def error_response(exc: BaseException, path: str) -> Response:
    status, message = status_and_message(exc)
    if status >= 500 and status != 503:  # a full queue is expected under load: no log line per refusal
        log.error("%s failed: %s", path, message, exc_info=not isinstance(exc, EmbedServeError))
    return openai_body(status, message) if is_openai_path(path) else ollama_body(status, message)


async def handle_error(request: Request, exc: Exception) -> Response:
    return error_response(exc, request.url.path)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Router misses: Gin's plain-text 404/405."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return PlainTextResponse("404 page not found", 404)
    if exc.status_code == 405:
        return PlainTextResponse("405 method not allowed", 405, headers=exc.headers)
    return PlainTextResponse(exc.detail or "", exc.status_code, headers=exc.headers)


EXCEPTION_HANDLERS = {
    HTTPException: handle_http_exception,
    HTTPError: handle_error,
    EmbedServeError: handle_error,
}
