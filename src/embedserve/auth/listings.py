"""Model listings show a key only the models it may use (``/api/tags``, ``/api/ps``, ``/v1/models``).

A key created with ``--models`` patterns should not learn which other models the server holds or
which ones other tenants keep loaded. The middleware runs the route, then drops the entries whose
name the key's patterns do not match; keys without patterns see everything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from embedserve.errors import InvalidModelName
from embedserve.server.peek import rewrite_json
from embedserve.store.names import canonical

# path -> (list field, name field)
LISTINGS = {
    "/api/tags": ("models", "name"),
    "/api/ps": ("models", "name"),
    "/v1/models": ("data", "id"),
}


def _keep(entry: Any, field: str, allows: Callable[[str], bool]) -> bool:
    name = entry.get(field) if isinstance(entry, dict) else None
    if not isinstance(name, str):
        return False
    try:
        return allows(canonical(name))
    except InvalidModelName:
        return False


async def filtered(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, allows: Callable[[str], bool]
) -> None:
    list_field, name_field = LISTINGS[scope["path"]]

    async def keep_allowed(listing: Any) -> Any:
        listing[list_field] = [e for e in listing[list_field] if _keep(e, name_field, allows)]
        return listing

    await rewrite_json(app, scope, receive, send, keep_allowed)
