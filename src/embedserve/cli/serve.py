"""CLI verb: ``embedserve serve [--host H] [--port P]`` — the Ollama/OpenAI-compatible server.

The address comes from the flags, else ``EMBEDSERVE_HOST``, else ``OLLAMA_HOST`` (parsed the way
Ollama does), else ``127.0.0.1:11434``. On first start the default model is pulled, visibly (progress
on stderr), if it is missing. SIGTERM stops accepting connections, lets in-flight requests finish
(at most ``--grace`` seconds) and exits 0.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from embedserve.config import DEFAULT_MODEL, Settings, load, parse_host
from embedserve.errors import EmbedServeError, InvalidInput

if TYPE_CHECKING:
    from embedserve.ray.app import Plan


def _address(args: argparse.Namespace, settings: Settings) -> Settings:
    if args.host:
        if any(c in args.host for c in ":[/"):  # host:port, [v6]:port, http://host...
            host, port = parse_host(args.host)
        else:
            host, port = args.host, settings.port
        settings = replace(settings, host=host, port=port)
    if args.port is not None:
        settings = replace(settings, port=args.port)
    return settings


def ensure_default_model(settings: Settings, store: object) -> None:
    """Pull the default model if it is missing; on failure warn and serve what is installed."""
    from embedserve.store.progress import ConsoleProgress

    if store.find(DEFAULT_MODEL) is not None:  # type: ignore[attr-defined]
        return
    if settings.offline:
        print(f"warning: {DEFAULT_MODEL} is not installed and offline mode is on", file=sys.stderr)
        return
    print(f"pulling the default model {DEFAULT_MODEL} (first start)", file=sys.stderr)
    try:
        with ConsoleProgress(sys.stderr) as progress:
            store.pull(DEFAULT_MODEL, progress=progress)  # type: ignore[attr-defined]
    except EmbedServeError as err:
        print(f"warning: could not pull {DEFAULT_MODEL}: {err}", file=sys.stderr)


def _cloud(args: argparse.Namespace, settings: Settings) -> Settings:
    """``--auth``, ``--plans``, ``--remote``, and the loopback rules for TLS."""
    from embedserve.server.middleware import is_loopback_bind

    if args.auth:
        settings = replace(settings, auth=True)
    if args.plans:
        settings = replace(settings, plans_file=Path(args.plans))
    if args.remote:
        settings = replace(settings, remote_url=args.remote.rstrip("/"))
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InvalidInput("--tls-cert and --tls-key go together")
    for path in (args.tls_cert, args.tls_key):
        if path and not Path(path).is_file():
            raise InvalidInput(f"TLS file not found: {path}")
    if not is_loopback_bind(settings.host):
        if settings.auth and not args.tls_cert and not args.insecure:
            raise InvalidInput(
                f"--auth on {settings.host} (beyond loopback) needs TLS: pass --tls-cert and "
                "--tls-key, or --insecure to send keys in clear text anyway"
            )
        if not settings.auth:
            print(
                f"warning: listening on {settings.host} without --auth: anyone who can reach "
                "this address can use every model",
                file=sys.stderr,
            )
    if settings.remote_url and not settings.api_key:
        print(
            "warning: --remote without EMBEDSERVE_API_KEY / OLLAMA_API_KEY: requests for cloud "
            "models go out without a key",
            file=sys.stderr,
        )
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    from embedserve.server.app import create_app
    from embedserve.store.local import ModelStore

    settings = _cloud(args, _address(args, load()))
    from embedserve.cache import open_cache

    cache = open_cache(settings)  # a bad EMBEDSERVE_REDIS_URL: one line and exit 1, before pulling
    if cache is not None:
        cache.close()
    plan = _ray_plan(args)
    store = ModelStore.from_settings(settings)
    if not args.no_pull:
        ensure_default_model(settings, store)
    if plan is not None:
        from embedserve.ray.serving import serve_forever

        serve_forever(settings, plan, args.ray_address, grace=args.grace)
        return 0
    app = create_app(settings, store=store)
    scheme = "https" if args.tls_cert else "http"
    mode = " (auth on)" if settings.auth else ""
    print(f"embedserve listening on {scheme}://{settings.host}:{settings.port}{mode}", file=sys.stderr)
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    if not run(
        app, settings.host, settings.port, grace=args.grace, log_level=args.log_level, tls=tls
    ):
        raise EmbedServeError(f"could not listen on {settings.host}:{settings.port}")
    return 0


AUTOSCALE_FLAGS = (
    ("--autoscale-target", "target"),
    ("--upscale-delay", "upscale_delay"),
    ("--downscale-delay", "downscale_delay"),
    ("--autoscale-window", "window"),
)


def _ray_plan(args: argparse.Namespace) -> Plan | None:
    """The Ray Serve plan for ``--ray``; Ray-only flags without ``--ray`` are an error."""
    ray_only = [
        flag
        for flag, value in (
            ("--ray-address", args.ray_address),
            ("--replicas", args.replicas),
            ("--autoscale", args.autoscale),
            ("--replica-threads", args.replica_threads),
            *((flag, getattr(args, dest)) for flag, dest in AUTOSCALE_FLAGS),
        )
        if value is not None
    ]
    if not args.ray:
        if ray_only:
            raise InvalidInput(f"{ray_only[0]} needs --ray")
        return None
    try:
        from embedserve.ray.app import Plan
        from embedserve.ray.serving import parse_autoscale
    except ImportError:
        raise EmbedServeError(
            "--ray needs Ray: pip install 'embedserve[ray]'"
        ) from None
    if getattr(args, "tls_cert", None):
        raise InvalidInput("--tls-cert is not supported with --ray: terminate TLS in front of Serve")
    if args.replicas is not None and args.autoscale is not None:
        raise InvalidInput("give --replicas N or --autoscale MIN:MAX, not both")
    if args.replicas is not None and args.replicas < 1:
        raise InvalidInput(f"--replicas must be at least 1, got {args.replicas}")
    threads = 1 if args.replica_threads is None else args.replica_threads
    if threads < 1:
        raise InvalidInput(f"--replica-threads must be at least 1, got {threads}")
    tuning = {dest: getattr(args, dest) for _, dest in AUTOSCALE_FLAGS if getattr(args, dest) is not None}
    if tuning and not args.autoscale:
        flag = next(f for f, dest in AUTOSCALE_FLAGS if dest in tuning)
        raise InvalidInput(f"{flag} needs --autoscale MIN:MAX")
    autoscale = parse_autoscale(args.autoscale, **tuning) if args.autoscale else None
    return Plan(replicas=args.replicas or 1, autoscale=autoscale, threads=threads)


def run(
    app: object,
    host: str,
    port: int,
    *,
    grace: float = 10.0,
    log_level: str = "warning",
    tls: tuple[str, str] | None = None,
) -> bool:
    """Serve ``app`` until SIGINT/SIGTERM; in-flight requests get ``grace`` seconds (rounded up).
    True if it ran."""
    import uvicorn

    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(grace),  # uvicorn takes whole seconds
        access_log=log_level == "debug",
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises a captured SIGTERM after its graceful shutdown; with a no-op handler in
    # place that re-raise is harmless and the process exits 0 instead of dying of the signal.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return bool(server.started)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="run the Ollama- and OpenAI-compatible embedding server")
    p.add_argument(
        "--host", help="address to bind (default 127.0.0.1, or EMBEDSERVE_HOST / OLLAMA_HOST)"
    )
    p.add_argument("--port", type=int, help="port (default 11434)")
    p.add_argument("--no-pull", action="store_true", help="do not pull the default model on start")
    p.add_argument(
        "--grace", type=float, default=10.0, help="seconds to finish in-flight requests on SIGTERM"
    )
    p.add_argument(
        "--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"]
    )
    p.add_argument("--auth", action="store_true", help="require API keys (or EMBEDSERVE_AUTH=1)")
    p.add_argument("--plans", help="TOML file overriding the default plans")
    p.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.add_argument(
        "--insecure", action="store_true", help="allow --auth beyond loopback without TLS"
    )
    p.add_argument(
        "--remote", help="offload NAME-cloud / NAME:cloud models to this embedserve URL"
    )
    r = p.add_argument_group("scale-out on Ray (needs the [ray] extra)")
    r.add_argument("--ray", action="store_true", help="serve as a Ray Serve application")
    r.add_argument(
        "--ray-address", metavar="ADDR", help="join this cluster (default: start Ray locally)"
    )
    r.add_argument("--replicas", type=int, metavar="N", help="model replicas (default 1)")
    r.add_argument(
        "--autoscale", metavar="MIN:MAX", help="scale replicas on queue depth between MIN and MAX"
    )
    r.add_argument(
        "--autoscale-target", dest="target", type=float, metavar="N",
        help="ongoing requests per replica the autoscaler aims at (32)",
    )
    r.add_argument(
        "--upscale-delay", dest="upscale_delay", type=float, metavar="S",
        help="seconds of more load before a replica is added (5)",
    )
    r.add_argument(
        "--downscale-delay", dest="downscale_delay", type=float, metavar="S",
        help="seconds of less load before a replica is removed (60)",
    )
    r.add_argument(
        "--autoscale-window", dest="window", type=float, metavar="S",
        help="seconds the load metric is averaged over (10)",
    )
    r.add_argument(
        "--replica-threads", type=int, metavar="T", help="CPUs and engine threads per replica (1)"
    )
    p.set_defaults(func=cmd_serve)
