"""``embedserve ps`` and ``embedserve stop MODEL``: ask the running server, as ``ollama ps|stop`` do.

The server is at ``EMBEDSERVE_HOST`` / ``OLLAMA_HOST`` (default 127.0.0.1:11434); with auth on,
the key comes from ``EMBEDSERVE_API_KEY`` (else ``OLLAMA_API_KEY``). ``stop`` sends Ollama's idiom,
an empty embed with ``keep_alive: 0``, which unloads the model once its in-flight requests finish.
"""

from __future__ import annotations

import argparse
import math
from datetime import datetime, timezone
from typing import Any

import httpx

from embedserve.cli.models import _table, human_bytes
from embedserve.config import Settings, load
from embedserve.errors import EmbedServeError


def server_url(settings: Settings) -> str:
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def call(settings: Settings, method: str, path: str, body: Any = None) -> Any:
    """One request to the running server; its error (or being down) as one clear line."""
    url = server_url(settings)
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    try:
        r = httpx.request(method, url + path, json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise EmbedServeError(
            f"could not reach embedserve at {url} ({type(exc).__name__}); is `embedserve serve` "
            "running?"
        ) from None
    if r.status_code >= 400:
        try:
            message = r.json().get("error")
        except ValueError:
            message = None
        if isinstance(message, dict):
            message = message.get("message")
        message = message or r.text.strip() or f"HTTP {r.status_code}"
        if r.status_code == 401:
            message += " (set EMBEDSERVE_API_KEY to a valid key)"
        raise EmbedServeError(str(message))
    return r.json() if r.content else None


def _until(value: str) -> str:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    left = (when - datetime.now(timezone.utc)).total_seconds()
    if left > 100 * 365 * 86400:
        return "Forever"
    if left <= 0:
        return "Stopping..."
    if left < 60:
        return f"{math.ceil(left)} seconds from now"
    if left < 7200:
        return f"{round(left / 60)} minutes from now"
    return f"{round(left / 3600)} hours from now"


def cmd_ps(args: argparse.Namespace) -> int:
    models = call(load(), "GET", "/api/ps")["models"]
    rows = [["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]]
    for m in models:
        rows.append(
            [
                m["name"],
                (m.get("digest") or "")[:12],
                human_bytes(int(m.get("size") or 0)),
                "100% CPU",
                str(m.get("context_length") or ""),
                _until(m.get("expires_at", "")),
            ]
        )
    print(_table(rows))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from embedserve.store.names import canonical

    settings = load()
    name = canonical(args.model)
    running = {m["name"] for m in call(settings, "GET", "/api/ps")["models"]}
    if name not in running:
        raise EmbedServeError(f"couldn't find model '{args.model}' to stop: it is not running")
    call(settings, "POST", "/api/embed", {"model": args.model, "input": [], "keep_alive": 0})
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("ps", help="list the models the running server has loaded")
    p.set_defaults(func=cmd_ps)
    s = sub.add_parser("stop", help="unload a model from the running server")
    s.add_argument("model")
    s.set_defaults(func=cmd_stop)
