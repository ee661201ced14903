"""The web playground at ``/ui``: static files shipped in the package (no build step, no CDN), and
``/ui/config.json`` telling the page whether the server wants a key and has an LLM for RAG.

The page talks only to the server's public API (``/api/embed``, ``/api/tags``, ``/api/ps``,
``/api/pull``, ``/api/collections``, ``/metrics``), so it can do nothing a client could not; with
``--auth`` its files are public and every API call carries the key the user pasted, which the page
keeps in the tab's ``sessionStorage`` only.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from embedserve.server.errors import HTTPError
from embedserve.server.openapi import BOOL, STR, Op, obj, route
from embedserve.server.responses import JSON

_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_HEADERS = {
    # the page loads nothing from elsewhere and is never framed
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _asset(name: str) -> bytes:
    return resources.files("embedserve.ui").joinpath("static", name).read_bytes()


async def root(request: Request) -> Response:
    return RedirectResponse("/ui/", status_code=307)


async def index(request: Request) -> Response:
    return Response(_asset("index.html"), media_type=_TYPES["index.html"], headers=_HEADERS)


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in _TYPES:
        raise HTTPError(404, f"no such file: {name}")
    return Response(_asset(name), media_type=_TYPES[name], headers=_HEADERS)


async def config(request: Request) -> Response:
    from embedserve import __version__

    state = request.app.state.embedserve
    return JSON({
        "auth": getattr(request.app.state, "auth", None) is not None,
        "llm": bool(state.settings.llm_url),
        "version": __version__,
    })


_HTML = {"text/html": STR}
ROUTES = [
    route("/ui", root, ["GET"], Op("Redirects to /ui/", ok_status=307, errors=(), tags=["ui"])),
    route("/ui/", index, ["GET"], Op("The playground page", ok_media=_HTML, errors=(), tags=["ui"])),
    route("/ui/config.json", config, ["GET"], Op(
        "What the page needs to know: auth on, an LLM configured, the version",
        ok=obj(["auth", "llm", "version"], auth=BOOL, llm=BOOL, version=STR), errors=(), tags=["ui"])),
    route("/ui/{name}", asset, ["GET"], Op(
        "The page's script and style sheet", ok_media={"text/javascript": STR, "text/css": STR},
        errors=(404,), tags=["ui"])),
]
