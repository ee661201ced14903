"""The offload middleware: requests for cloud models go to the remote embedserve, with the key.

For ``/api/embed``, ``/api/embeddings``, ``/api/show``, ``/api/pull`` and ``/v1/embeddings`` naming a
cloud model (``remote/names.py``), the body goes to the same path on the remote with the model
renamed to its remote name and ``Authorization: Bearer <key>``; the remote's status, body and
``Retry-After`` / content type come back unchanged, streamed as they arrive (a pull's progress
lines included). The remote being unreachable is a 502 in the route family's error shape.
``GET /api/tags`` adds the remote's models under their cloud names with ``remote_model`` and
``remote_host``; if the remote cannot be listed, the local list is answered alone.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedserve.remote.names import cloud_name, remote_name
from embedserve.server.peek import peek_json, rewrite_json

log = logging.getLogger("embedserve.remote")

_FORWARD = {"/api/embed", "/api/embeddings", "/api/show", "/api/pull", "/v1/embeddings"}
_PASS_HEADERS = {b"content-type", b"retry-after", b"www-authenticate"}


class OffloadMiddleware:
    def __init__(
        self, app: ASGIApp, *, remote: str, api_key: str | None, max_body_bytes: int
    ) -> None:
        self.app = app
        self.remote = remote.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.max_body_bytes = max_body_bytes
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(600.0, connect=5.0), headers=self.headers
            )
        return self._client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # close the remote connections when the server stops

            async def send_closing(message: Message) -> None:
                if message["type"] == "lifespan.shutdown.complete" and self._client is not None:
                    await self._client.aclose()
                    self._client = None
                await send(message)

            await self.app(scope, receive, send_closing)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if method == "POST" and path in _FORWARD:
            body, receive = await peek_json(scope, receive, self.max_body_bytes)
            if isinstance(body, dict):
                field = "model" if isinstance(body.get("model"), str) and body["model"] else "name"
                name = body.get(field)
                target = remote_name(name) if isinstance(name, str) else None
                if target is not None:
                    await self._forward(scope, send, path, {**body, field: target})
                    return
        elif method == "GET" and path == "/api/tags":
            await self._tags(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _error(self, scope: Scope, send: Send, status: int, message: str) -> None:
        if scope["path"].startswith("/v1/"):
            body: Any = {
                "error": {"message": message, "type": "api_error", "param": None, "code": None}
            }
        else:
            body = {"error": message}
        payload = orjson.dumps(body)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(payload)),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _forward(self, scope: Scope, send: Send, path: str, body: dict[str, Any]) -> None:
        request = self.client.build_request(
            "POST",
            self.remote + path,
            content=orjson.dumps(body),
            headers={"content-type": "application/json"},
        )
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            await self._error(
                scope, send, 502, f"remote {self.remote} unreachable: {type(exc).__name__}"
            )
            return
        try:
            headers = [(k, v) for k, v in response.headers.raw if k.lower() in _PASS_HEADERS]
            await send(
                {"type": "http.response.start", "status": response.status_code, "headers": headers}
            )
            try:
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except httpx.HTTPError as exc:  # mid-stream: the status is sent; end the body
                log.warning("remote stream broke: %s", type(exc).__name__)
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    async def _tags(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def add_remote(listing: Any) -> Any:
            listing["models"] = [*listing.get("models", []), *await self._remote_models()]
            return listing

        await rewrite_json(self.app, scope, receive, send, add_remote)

    async def _remote_models(self) -> list[dict[str, Any]]:
        try:
            r = await self.client.get(self.remote + "/api/tags", timeout=5.0)
            r.raise_for_status()
            models = r.json().get("models", [])
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.warning("listing %s failed: %s", self.remote, type(exc).__name__)
            return []
        out = []
        for m in models:
            if not isinstance(m, dict) or not isinstance(m.get("name"), str):
                continue
            if remote_name(m["name"]) is not None:  # the remote's own cloud models: not ours
                continue
            local = cloud_name(m["name"])
            out.append(
                {
                    **m,
                    "name": local,
                    "model": local,
                    "remote_model": m["name"],
                    "remote_host": self.remote,
                }
            )
        return out
