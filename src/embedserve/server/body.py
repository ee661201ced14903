"""Reading request bodies: the size limit, JSON parsing, and Go-decoder-style type errors.

Ollama's handlers bind JSON into Go structs, so a wrong type answers e.g. ``json: cannot unmarshal
number into Go struct field EmbedRequest.model of type string``; the helpers here say the same.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from embedserve.errors import InvalidInput, PayloadTooLarge
from embedserve.server.errors import HTTPError

MISSING_BODY = "missing request body"


def go_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body too large: the limit is {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes (by header first, then while reading)."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise InvalidInput("invalid Content-Length header") from None
        if declared > limit:
            raise _too_large(limit)
        return await request.body()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int, struct: str) -> dict[str, Any]:
    """The body as a JSON object; empty body -> 400 ``missing request body``."""
    raw = await read_body(request, limit)
    if not raw.strip():
        raise HTTPError(400, MISSING_BODY)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HTTPError(400, f"invalid JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise HTTPError(
            400, f"json: cannot unmarshal {go_type(data)} into Go value of type api.{struct}"
        )
    return data


def _mismatch(struct: str, key: str, value: Any, want: str) -> HTTPError:
    return HTTPError(
        400,
        f"json: cannot unmarshal {go_type(value)} into Go struct field {struct}.{key} of type {want}",
    )


def get_str(data: dict[str, Any], key: str, struct: str, default: str = "") -> str:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _mismatch(struct, key, value, "string")
    return value


def get_bool(data: dict[str, Any], key: str, struct: str, default: bool) -> bool:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _mismatch(struct, key, value, "bool")
    return value


def get_int(data: dict[str, Any], key: str, struct: str, default: int = 0) -> int:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _mismatch(struct, key, value, "int")
    if isinstance(value, float) and not value.is_integer():
        raise HTTPError(
            400,
            f"json: cannot unmarshal number {value} into Go struct field {struct}.{key} of type int",
        )
    return int(value)


_INT_OPTIONS = frozenset(
    {"num_ctx", "num_batch", "num_thread", "num_gpu", "main_gpu", "num_keep", "seed", "num_predict"}
)


def check_options(data: dict[str, Any], struct: str) -> dict[str, Any]:
    """``options`` must be an object (or null); known integer options must be integers."""
    value = data.get("options")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _mismatch(struct, "options", value, "map[string]interface {}")
    for key in _INT_OPTIONS.intersection(value):
        v = value[key]
        if v is not None and (
            isinstance(v, bool)
            or not isinstance(v, (int, float))
            or (isinstance(v, float) and not v.is_integer())
        ):
            raise HTTPError(400, f'option "{key}" must be of type integer')
    return value
