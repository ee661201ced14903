"""One pure-ASGI middleware for every request: Ollama's Host guard and CORS, and request metrics.

* Host guard (only when bound to loopback, like Ollama's ``allowedHostsMiddleware``): the ``Host``
  header must be a loopback / private / unspecified IP, ``localhost``, this machine's hostname, or
  end in ``.localhost``, ``.local`` or ``.internal``; anything else is 403 (DNS-rebinding defence).
* CORS (gin-contrib/cors as Ollama configures it): a cross-origin request whose ``Origin`` is not
  allowed gets 403; allowed origins are ``Settings.origins`` plus http(s)://localhost, 127.0.0.1
  and 0.0.0.0 on any port, and app://, file://, tauri://, vscode-webview://, vscode-file://.
* Metrics: latency histogram and responses by (route template, status); paths outside the route
  table are counted as ``other`` so a scanner cannot blow up the series.

Pure ASGI (not ``BaseHTTPMiddleware``) keeps the per-request cost to a few dict lookups.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedserve.service.metrics import Metrics

_DEFAULT_ORIGINS = tuple(
    f"{scheme}://{host}{port}"
    for host in ("localhost", "127.0.0.1", "0.0.0.0")
    for scheme in ("http", "https")
    for port in ("", ":*")
) + ("app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")

_ALLOW_HEADERS = (
    "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, OpenAI-Beta, "
    "x-stainless-arch, x-stainless-async, x-stainless-custom-poll-interval, "
    "x-stainless-helper-method, x-stainless-lang, x-stainless-os, x-stainless-package-version, "
    "x-stainless-poll-helper, x-stainless-retry-count, x-stainless-runtime, "
    "x-stainless-runtime-version, x-stainless-timeout"
)
_ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"


def is_loopback_bind(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _origin_pattern(origins: Iterable[str]) -> re.Pattern[str] | None:
    parts = []
    for origin in origins:
        if origin == "*":
            return None  # everything allowed
        parts.append(".*".join(re.escape(p) for p in origin.split("*")))
    return re.compile("(?:" + "|".join(parts) + r")\Z")


def _split_host(value: str) -> str:
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def allowed_host(value: str, hostname: str) -> bool:
    host = _split_host(value.strip()).lower()
    if not host or host == "localhost" or host == hostname:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return any(host.endswith(suffix) for suffix in (".localhost", ".local", ".internal"))
    return ip.is_loopback or ip.is_private or ip.is_unspecified or ip.is_link_local


class GuardMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        check_host: bool,
        origins: Iterable[str],
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.check_host = check_host
        self.origins = _origin_pattern((*origins, *_DEFAULT_ORIGINS))
        self.metrics = metrics
        self.hostname = socket.gethostname().lower()
        self._hosts: dict[str, bool] = {}  # Host header -> allowed (a client sends the same one)

    def _allowed(self, host: str) -> bool:
        ok = self._hosts.get(host)
        if ok is None:
            ok = allowed_host(host, self.hostname)
            if len(self._hosts) < 256:  # bounded: a scanner cannot grow it
                self._hosts[host] = ok
        return ok

    async def _plain(self, send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_box = [0]
        metrics = self.metrics

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
                if cors_origin is not None:
                    message.setdefault("headers", [])
                    message["headers"] = [
                        *message["headers"],
                        (b"access-control-allow-origin", cors_origin),
                        (b"vary", b"Origin"),
                    ]
            await send(message)

        cors_origin: bytes | None = None
        try:
            host = b""
            origin = b""
            for key, value in scope["headers"]:
                if key == b"host":
                    host = value
                elif key == b"origin":
                    origin = value
            host_s = host.decode("latin-1")
            if self.check_host and not self._allowed(host_s):
                status_box[0] = 403
                await self._plain(send, 403, [])
                return
            if origin:
                origin_s = origin.decode("latin-1")
                same = origin_s in (f"http://{host_s}", f"https://{host_s}")
                if not same:
                    if self.origins is not None and not self.origins.match(origin_s):
                        status_box[0] = 403
                        await self._plain(send, 403, [])
                        return
                    cors_origin = origin
                    if scope["method"] == "OPTIONS":
                        status_box[0] = 204
                        await self._plain(
                            send,
                            204,
                            [
                                (b"access-control-allow-origin", origin),
                                (b"access-control-allow-methods", _ALLOW_METHODS.encode()),
                                (b"access-control-allow-headers", _ALLOW_HEADERS.encode()),
                                (b"access-control-max-age", b"43200"),
                                (b"vary", b"Origin"),
                            ],
                        )
                        return
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")  # set by Starlette's router on a match: the path template
            label = getattr(route, "path", None) or "other"
            status = status_box[0] or 500
            metrics.requests.inc(1, (label, str(status)))
            metrics.latency.observe(time.perf_counter() - start, (label,))
