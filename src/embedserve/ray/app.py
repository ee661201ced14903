"""The Serve application: ingress (the whole HTTP app) -> replicas (models) and a board.

* **ingress** runs :func:`embedserve.server.app.create_app` unchanged: routes, middleware (host
  guard, CORS, and whatever else the app carries), error table, NDJSON streaming. Only its manager
  is a :class:`~embedserve.ray.remote.RemoteManager`. It reserves no CPU: it parses and encodes
  JSON while the replicas run the engines.
* **replica** (``Replica``): ``threads`` CPUs each, ``replicas`` of them or autoscaled on
  ongoing requests per replica (Serve's queue-depth signal) between ``MIN:MAX`` (:class:`Autoscale`).
* **board** (``Board``): replica reports for ``/health``, ``/api/ps``, ``/metrics``.

``build(...)`` returns the bound application for ``serve.run``; ``app_builder(args)`` is the same
from a dict, for ``serve run embedserve.ray.app:app_builder`` and KubeRay's RayService.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from embedserve.config import Settings
from embedserve.ray.board import Board
from embedserve.ray.remote import RemoteManager
from embedserve.ray.replica import LoaderFactory, Replica
from embedserve.server.errors import HTTPError, error_response

StoreFactory = Callable[[Settings], Any]

APP_NAME = "embedserve"
# Each replica's batcher merges concurrent requests, so it must see many at once (Serve's default
# of a few would starve the batcher); autoscaling aims at this many in flight per replica.
MAX_ONGOING = 1024


@dataclass(frozen=True)
class Autoscale:
    """Serve's request-based autoscaler, in the terms of ``serve --ray --autoscale MIN:MAX``.

    Serve wants ``ceil(ongoing / target)`` replicas, where ``ongoing`` is the requests in flight
    (queued in a batcher or running) per replica, averaged over the last ``window`` seconds; it
    adds replicas once that has asked for more for ``upscale_delay`` seconds, and removes them
    once it has asked for fewer for ``downscale_delay`` seconds. The replicas and handles push the
    metric every ``window / 5`` seconds (Serve's default push is every 10 s, its window 30 s,
    which is why the defaults here are shorter: a replica is added within seconds of a burst)."""

    low: int
    high: int
    target: float = 32.0  # ongoing requests per replica
    upscale_delay: float = 5.0
    downscale_delay: float = 60.0
    window: float = 10.0  # look-back seconds of the averaged metric

    def config(self) -> dict[str, Any]:
        """Serve's ``autoscaling_config``."""
        return {
            "min_replicas": self.low,
            "initial_replicas": self.low,
            "max_replicas": self.high,
            "target_ongoing_requests": self.target,
            "upscale_delay_s": self.upscale_delay,
            "downscale_delay_s": self.downscale_delay,
            "look_back_period_s": self.window,
            "metrics_interval_s": self.window / 5,
        }


@dataclass(frozen=True)
class Plan:
    replicas: int = 1
    autoscale: Autoscale | None = None
    threads: int = 1  # CPUs (and engine threads) per replica
    collections_refusal: str = ""  # non-empty: collection routes answer 503 with this text
    pull: tuple[str, ...] = ()  # models each replica pulls on start if its node lacks them
    ingress_replicas: int = 1  # HTTP parsing and JSON: one per node in front of many replicas


def refusal_routes(message: str) -> list[BaseRoute]:
    async def refuse(request: Request) -> Response:
        return error_response(HTTPError(503, message), request.url.path)

    methods = ["GET", "POST", "DELETE"]
    return [
        Route("/api/collections", refuse, methods=methods),
        Route("/api/collections/{rest:path}", refuse, methods=methods),
    ]


@serve.ingress()
class Ingress:
    def __init__(
        self,
        settings: Settings,
        replica: Any,
        board: Any,
        store_factory: StoreFactory | None,
        collections_refusal: str,
    ) -> None:
        self._settings = settings
        self._replica = replica
        self._board = board
        self._store_factory = store_factory
        self._refusal = collections_refusal

    def __serve_build_asgi_app__(self) -> Any:
        from embedserve.server.app import create_app

        if self._store_factory is not None:
            store = self._store_factory(self._settings)
        else:
            from embedserve.store.local import ModelStore

            store = ModelStore.from_settings(self._settings)
        replica, board = self._replica, self._board
        return create_app(
            self._settings,
            store=store,
            manager_factory=lambda cfg, executor, metrics: RemoteManager(
                cfg, replica, board, metrics
            ),
            collection_routes=refusal_routes(self._refusal) if self._refusal else None,
        )


def build(
    settings: Settings,
    plan: Plan,
    *,
    loader_factory: LoaderFactory | None = None,
    store_factory: StoreFactory | None = None,
) -> Any:
    """The bound Serve application (pass to ``serve.run``)."""
    board = serve.deployment(Board, name="board", ray_actor_options={"num_cpus": 0}).bind()
    options: dict[str, Any] = {
        "name": "replica",
        "ray_actor_options": {"num_cpus": plan.threads},
        "max_ongoing_requests": MAX_ONGOING,
        "health_check_period_s": 2,
        "health_check_timeout_s": 30,
        "graceful_shutdown_timeout_s": 10,
    }
    if plan.autoscale is not None:
        options["autoscaling_config"] = plan.autoscale.config()
    else:
        options["num_replicas"] = plan.replicas
    replica = serve.deployment(Replica, **options).bind(
        settings, board, plan.threads, loader_factory, plan.pull
    )
    ingress = serve.deployment(
        Ingress,
        name="ingress",
        num_replicas=plan.ingress_replicas,
        ray_actor_options={"num_cpus": 0},
        max_ongoing_requests=MAX_ONGOING,
    )
    return ingress.bind(settings, replica, board, store_factory, plan.collections_refusal)


AUTOSCALE_ARGS = {
    "autoscale_target": "target",
    "upscale_delay": "upscale_delay",
    "downscale_delay": "downscale_delay",
    "autoscale_window": "window",
}
BUILDER_ARGS = ("replicas", "autoscale", *AUTOSCALE_ARGS, "threads", "ingress", "pull")


def app_builder(args: dict[str, Any]) -> Any:
    """``serve run embedserve.ray.app:app_builder replicas=2 threads=2 pull=all-minilm`` / a
    RayService's ``import_path``: settings from the environment (EMBEDSERVE_HOME...), the plan from
    ``args`` (``replicas`` or ``autoscale: "MIN:MAX"`` with ``autoscale_target``,
    ``upscale_delay``, ``downscale_delay``, ``autoscale_window``; ``threads``, ``ingress``
    replicas, ``pull``: comma-separated models each replica pulls if missing). A cluster
    deployment is multi-node by nature, so the collection routes are off unless
    EMBEDSERVE_DATABASE_URL names a shared database. Unknown args are an error (a typo in a
    RayService manifest must not be silently ignored)."""
    from embedserve.config import load
    from embedserve.ray.cluster import COLLECTIONS_NEED_SHARED_STORE

    unknown = sorted(set(args) - set(BUILDER_ARGS))
    if unknown:
        raise ValueError(
            f"unknown embedserve app_builder args {unknown}; known: {', '.join(BUILDER_ARGS)}"
        )
    settings = load()
    autoscale = None
    if args.get("autoscale"):
        from embedserve.ray.serving import parse_autoscale

        tuning = {
            field: float(args[key]) for key, field in AUTOSCALE_ARGS.items() if key in args
        }
        autoscale = parse_autoscale(str(args["autoscale"]), **tuning)
    plan = Plan(
        replicas=int(args.get("replicas", 1)),
        autoscale=autoscale,
        threads=int(args.get("threads", 1)),
        ingress_replicas=int(args.get("ingress", 1)),
        pull=tuple(p.strip() for p in str(args.get("pull", "")).split(",") if p.strip()),
        collections_refusal=""
        if getattr(settings, "database_url", None)
        else COLLECTIONS_NEED_SHARED_STORE.format(nodes="several"),
    )
    return build(settings, plan)
