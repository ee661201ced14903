"""``embedserve serve --ray``: deploy the Serve application and wait for SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import replace
from typing import Any

from embedserve.config import Settings
from embedserve.errors import EmbedServeError, InvalidInput
from embedserve.ray import cluster
from embedserve.ray.app import APP_NAME, Autoscale, Plan, build


def parse_autoscale(value: str, **tuning: float) -> Autoscale:
    """``"MIN:MAX"`` (1 <= MIN <= MAX) and the autoscaler's knobs (``target`` > 0, ``window`` > 0,
    delays >= 0; see :class:`Autoscale`) -> an :class:`Autoscale`."""
    try:
        low_s, high_s = value.split(":")
        low, high = int(low_s), int(high_s)
    except ValueError:
        raise InvalidInput(f"--autoscale wants MIN:MAX replicas, e.g. 1:4; got {value!r}") from None
    if not 1 <= low <= high:
        raise InvalidInput(f"--autoscale MIN:MAX needs 1 <= MIN <= MAX; got {value!r}")
    for name in ("target", "window"):
        if name in tuning and not tuning[name] > 0:
            flag = "--autoscale-target" if name == "target" else "--autoscale-window"
            raise InvalidInput(f"{flag} must be above 0, got {tuning[name]:g}")
    for name in ("upscale_delay", "downscale_delay"):
        if name in tuning and not tuning[name] >= 0:
            flag = "--" + name.replace("_", "-")
            raise InvalidInput(f"{flag} must be 0 or more seconds, got {tuning[name]:g}")
    return Autoscale(low, high, **tuning)


def check_fits(plan: Plan, cpus: int) -> None:
    """Refuse a plan whose replicas can never all be placed (Serve would wait for them forever)."""
    count = plan.autoscale.low if plan.autoscale else plan.replicas
    need = count * plan.threads
    if need > cpus:
        raise InvalidInput(
            f"{count} replica{'s' if count != 1 else ''} x {plan.threads} thread"
            f"{'s' if plan.threads != 1 else ''} need {need} CPUs; the Ray cluster has {cpus}"
        )


def deploy(
    settings: Settings,
    plan: Plan,
    *,
    loader_factory: Any = None,
    store_factory: Any = None,
) -> Plan:
    """Start Serve's proxies on ``settings.host:port`` and run the application (Ray connected)."""
    from ray import serve

    nodes = cluster.alive_nodes()
    check_fits(plan, cluster.total_cpus())
    plan = replace(plan, collections_refusal=cluster.collections_refusal(settings, len(nodes)))
    serve.start(
        proxy_location=cluster.proxy_location(nodes),
        http_options={"host": settings.host, "port": settings.port},
    )
    app = build(settings, plan, loader_factory=loader_factory, store_factory=store_factory)
    serve.run(app, name=APP_NAME, route_prefix="/")
    return plan


def serve_forever(settings: Settings, plan: Plan, address: str | None, *, grace: float) -> None:
    import ray
    from ray import serve

    started = cluster.connect(address)
    try:
        where = address or "a local Ray instance"
        print(f"embedserve: deploying on {where} ...", file=sys.stderr)
        try:
            plan = deploy(settings, plan)
        except (RuntimeError, ValueError) as exc:
            raise EmbedServeError(f"Ray Serve could not start the application: {exc}") from None
        if plan.collections_refusal:
            print(f"warning: {plan.collections_refusal}", file=sys.stderr)
        scale = plan.autoscale
        count = f"{scale.low}-{scale.high}" if scale else str(plan.replicas)
        print(
            f"embedserve listening on http://{settings.host}:{settings.port} (Ray Serve, "
            f"{count} replica(s) x {plan.threads} thread(s))",
            file=sys.stderr,
        )
        stop = threading.Event()
        previous = {
            sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            stop.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        serve.delete(APP_NAME)
        serve.shutdown()
    finally:
        if started:
            ray.shutdown()
