"""Joining a Ray cluster (or starting a local one) and reading what it looks like."""

from __future__ import annotations

import logging
from typing import Any

from embedserve.config import Settings, cpu_quota
from embedserve.errors import EmbedServeError

COLLECTIONS_NEED_SHARED_STORE = (
    "collections are off in this deployment: the Ray cluster has {nodes} nodes and the collection "
    "store is SQLite on one node's disk; set EMBEDSERVE_DATABASE_URL to a PostgreSQL database to "
    "share collections across nodes"
)


def connect(address: str | None, *, object_store_mb: int | None = 512) -> bool:
    """Join ``address`` (``auto``, ``host:port``, ``ray://...``) or start a local Ray instance with
    this process's CPU quota and a small object store (only vectors and shard descriptors travel
    through it). True if this call started Ray (so its caller shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": False,
    }
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            if object_store_mb:
                kwargs["object_store_memory"] = object_store_mb * 1024 * 1024
            ray.init(num_cpus=cpu_quota(), **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local instance"
        raise EmbedServeError(f"could not start or join Ray ({where}): {exc}") from None
    return True


def alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def total_cpus() -> int:
    import ray

    return int(ray.cluster_resources().get("CPU", 0))


def collections_refusal(settings: Settings, nodes: int) -> str:
    """Why the collection routes must stay off ('' when they may run): SQLite is one node's file."""
    if nodes <= 1 or getattr(settings, "database_url", None):
        return ""
    return COLLECTIONS_NEED_SHARED_STORE.format(nodes=nodes)


def proxy_location(nodes: list[dict[str, Any]]) -> str:
    """A proxy on every node of a real cluster; one on the head when all nodes share one address
    (a cluster on one machine, where every proxy would want the same port)."""
    addresses = {n.get("NodeManagerAddress") for n in nodes}
    return "EveryNode" if len(addresses) > 1 else "HeadOnly"
