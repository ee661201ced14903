"""Read a request's JSON body in a middleware without taking it from the route.

``await peek_json(scope, receive, limit)`` returns the parsed body (``None`` if it is not JSON,
or longer than ``limit``) and a ``receive`` to pass on, which replays what was read and then
continues with the original. The body is kept in the scope, so a second middleware peeking the
same request parses nothing again. Routes still parse and validate the body themselves: a
middleware only looks at a field or two (``model``), and a body it cannot read is left for the
route's own error.

``rewrite_json`` is the other direction: a middleware editing a route's (small) JSON answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SCOPE_KEY = "embedserve.peeked"


def _replay(chunks: list[bytes], more: bool, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": more}
        return await receive()

    return replay


async def peek_json(scope: Scope, receive: Receive, limit: int) -> tuple[Any, Receive]:
    if _SCOPE_KEY in scope:  # an outer middleware read it; its replay is our receive
        return scope[_SCOPE_KEY], receive
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: let the route see it

            async def gone(message: Message = message) -> Message:
                return message

            return None, gone
        body = message.get("body", b"")
        chunks.append(body)
        size += len(body)
        more = bool(message.get("more_body", False))
        if size > limit:  # the route answers 413; nothing to look at
            return None, _replay(chunks, more, receive)
    try:
        parsed = orjson.loads(b"".join(chunks)) if size else None
    except orjson.JSONDecodeError:
        parsed = None
    scope[_SCOPE_KEY] = parsed
    return parsed, _replay(chunks, False, receive)


def model_field(body: Any, *fields: str) -> str | None:
    """The first non-empty string among ``fields`` of a JSON object body."""
    if not isinstance(body, dict):
        return None
    for field in fields:
        value = body.get(field)
        if isinstance(value, str) and value:
            return value
    return None


async def rewrite_json(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    edit: Callable[[Any], Awaitable[Any]],
) -> None:
    """Run ``app`` and answer its JSON body passed through ``edit`` (only a 200; anything else,
    or a body that is not JSON, goes out unchanged). For small listings, not streams."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def capture(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, capture)
    assert start is not None
    body = b"".join(chunks)
    if start["status"] == 200:
        try:
            body = orjson.dumps(await edit(orjson.loads(body)))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            pass
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", b"%d" % len(body)))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body})
