"""``GET /api/usage``: the calling key's plan, windows (used, remaining, reset times) and limits."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from embedserve.auth.middleware import PRINCIPAL_KEY
from embedserve.server.errors import HTTPError
from embedserve.server.openapi import ANY_OBJ, STR, Op, array, obj, route
from embedserve.server.responses import JSON


async def usage(request: Request) -> Response:
    service = getattr(request.app.state, "auth", None)
    principal = request.scope.get(PRINCIPAL_KEY)
    if service is None or principal is None:
        raise HTTPError(404, "usage is metered only when the server runs with --auth")
    return JSON(service.report(principal))


ROUTES = [
    route(
        "/api/usage",
        usage,
        ["GET"],
        Op(
            "The calling key's plan, usage windows (used, remaining, reset times) and limits",
            ok=obj(
                ["name", "plan", "windows"],
                name=STR,
                plan=ANY_OBJ,
                windows=ANY_OBJ,
                requests_per_minute=ANY_OBJ,
                models_in_flight=array(STR),
            ),
            errors=(404,),
            tags=["auth"],
        ),
    ),
]
