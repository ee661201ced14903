"""The app factory: Ollama + OpenAI routes, ``/health``, ``/metrics``, and room for more.

``create_app(settings, loader=..., store=..., extra_routes=...)`` builds a Starlette app whose shared
state (:class:`~embedserve.server.state.ServerState`, at ``app.state.embedserve``) is created in the
lifespan hook, never at import. Tests inject a fake engine loader and a stand-in store; the real
path loads ONNX engines with ``service.loader.load_engine`` (which never pulls: the server answers
404 for a model that is not installed, as Ollama does).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from embedserve import ui as ui_room
from embedserve.cache import open_cache
from embedserve.cache.metrics import cache_series
from embedserve.config import Settings, cpu_quota
from embedserve.engine.base import Engine
from embedserve.server import routes_collections, routes_ollama, routes_openai, routes_rerank
from embedserve.server.admission import AdmissionMiddleware
from embedserve.server.errors import EXCEPTION_HANDLERS, handle_error
from embedserve.server.middleware import GuardMiddleware, is_loopback_bind
from embedserve.server.openapi import STR, Op, document, obj, route
from embedserve.server.responses import JSON
from embedserve.server.state import ServerState
from embedserve.service.admission import Admission
from embedserve.service.manager import ModelManager
from embedserve.service.metrics import Metrics


async def health(request: Request) -> Response:
    state: ServerState = request.app.state.embedserve
    return JSON(state.manager.health())


async def metrics(request: Request) -> Response:
    state: ServerState = request.app.state.embedserve
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _no_errors(path: str, method: str) -> tuple[int, ...]:
    return ()


def _auth_errors(path: str, method: str) -> tuple[int, ...]:
    from embedserve.auth.middleware import is_public

    return () if is_public(method, path) else (401, 403, 429)


async def openapi_json(request: Request) -> Response:
    doc = getattr(request.app.state, "openapi", None)
    if doc is None:  # built once, from the app's own route table
        from embedserve import __version__

        extra = _auth_errors if getattr(request.app.state, "auth", None) is not None else _no_errors
        doc = request.app.state.openapi = document(
            request.app.routes, version=__version__, extra_errors=extra
        )
    return JSON(doc)


OPS_ROUTES = [
    route("/health", health, ["GET", "HEAD"], Op("Health: each resident model's state", ok=obj(["status"]),
          errors=(), tags=["ops"])),
    route("/metrics", metrics, ["GET"], Op("Prometheus metrics", ok_media={"text/plain": STR}, errors=(),
          tags=["ops"])),
    route("/openapi.json", openapi_json, ["GET"], Op("This document", ok=obj(["openapi", "paths"]),
          errors=(), tags=["ops"])),
]


def default_loader(settings: Settings) -> Callable[[str], Engine]:
    from embedserve.service.loader import load_engine

    def load(name: str) -> Engine:  # never pulls: a missing model is Ollama's 404
        return load_engine(name, settings, pull=False)  # type: ignore[no-any-return]

    return load


def create_app(
    settings: Settings | None = None,
    *,
    loader: Callable[[str], Engine] | None = None,
    store: Any = None,
    extra_routes: Sequence[BaseRoute] = (),
    auth: Any = None,
    manager_factory: Callable[[Settings, ThreadPoolExecutor, Metrics], Any] | None = None,
    collection_routes: Sequence[BaseRoute] | None = None,
) -> Starlette:
    """The server app. ``loader(name) -> Engine`` blocks (it runs in a worker thread).

    ``auth`` (an ``embedserve.auth.AuthService``) turns on API keys; ``settings.auth`` builds one.
    ``manager_factory(settings, executor, metrics)`` replaces the in-process
    :class:`ModelManager` with anything of the same shape (``embedserve.ray`` passes one whose
    models live in Ray Serve replicas); ``collection_routes`` replaces the collection routes
    (``embedserve.ray`` refuses them on a multi-node cluster without a shared store).
    """
    if settings is None:
        from embedserve.config import load

        settings = load()
    if store is None:
        from embedserve.store.local import ModelStore

        store = ModelStore.from_settings(settings)
    engine_loader = loader or default_loader(settings)
    from embedserve import auth as auth_room
    from embedserve import remote as remote_room

    if auth is None and settings.auth:
        auth = auth_room.build(settings)
    metrics_ = Metrics()
    cfg = settings

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        threads = cfg.threads or cpu_quota()
        executor = ThreadPoolExecutor(max(2, threads), thread_name_prefix="embedserve-model")
        io_executor = ThreadPoolExecutor(4, thread_name_prefix="embedserve-store")
        if manager_factory is not None:
            manager = manager_factory(cfg, executor, metrics_)
        else:
            manager = ModelManager(cfg, engine_loader, executor, metrics=metrics_)
        cache = open_cache(cfg)  # a bad EMBEDSERVE_REDIS_URL stops the start, with its message
        if cache is not None:
            metrics_.add(*cache_series(cache))
        app.state.embedserve = ServerState(
            cfg, manager, store, metrics_, executor, io_executor, cache,
            admission=Admission(manager.batchers),
        )
        if auth is not None:
            await auth.start()
        try:
            yield
        finally:
            await manager.close()
            if auth is not None:
                await auth.close()  # after the last request: its usage is written too
            if cache is not None:
                await cache.aclose()
            executor.shutdown(wait=False, cancel_futures=True)
            io_executor.shutdown(wait=False, cancel_futures=True)

    routes: list[BaseRoute] = [
        *routes_ollama.ROUTES,
        *routes_openai.ROUTES,
        *(routes_collections.ROUTES if collection_routes is None else collection_routes),
        *routes_rerank.ROUTES,
        *OPS_ROUTES,
        *auth_room.ROUTES,
        *ui_room.ROUTES,
        *extra_routes,
    ]
    handlers: dict[Any, Any] = dict(EXCEPTION_HANDLERS)
    handlers[Exception] = handle_error  # a bug still answers in the right shape (500)
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=handlers,
        middleware=[
            Middleware(
                GuardMiddleware,
                check_host=is_loopback_bind(settings.host),
                origins=settings.origins,
                metrics=metrics_,
            ),
            *auth_room.middleware(auth, settings),
            *remote_room.middleware(settings),
            Middleware(AdmissionMiddleware),
        ],
    )
    app.state.auth = auth
    return app
