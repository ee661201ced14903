"""The front half of admission control: a pure-ASGI middleware that answers Ollama's 503 for the
embed routes before their body is read, when :class:`~embedserve.service.admission.Admission`
says the queues are full, pacing the refusals (see that module for why)."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send

from embedserve.server.errors import OVERLOAD_BODY_OLLAMA, OVERLOAD_BODY_OPENAI

EMBED_PATHS = frozenset({"/api/embed", "/api/embeddings", "/v1/embeddings"})
RETRY_AFTER = b"1"  # a full queue (512 inputs) drains in about a second on two cores


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in EMBED_PATHS:
            state = getattr(scope["app"].state, "embedserve", None)
            admission = getattr(state, "admission", None)
            if state is not None and admission is not None and admission.saturated():
                delay = admission.refusal_delay()
                state.metrics.overloaded.inc(1, ("*",))
                if delay:
                    await asyncio.sleep(delay)
                body = OVERLOAD_BODY_OPENAI if scope["path"].startswith("/v1/") else OVERLOAD_BODY_OLLAMA
                await send({
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", RETRY_AFTER),
                    ],
                })
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
