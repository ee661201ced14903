"""The ingress side: a manager of the same shape as ModelManager whose models live in replicas.

The routes (``server/state.embed_texts``, the collection routes, ``/api/ps``, ``/health``) call
``acquire``/``release``/``use``, ``resident.batcher.submit``, ``resident.engine.info`` and
``token_spans``, ``running()``, ``health()``, ``unload()``; this module answers each by calling a
replica through a Serve handle with the model as the multiplexed model id (so Serve picks a
replica that already holds it) or by reading the board's reports.

``acquire`` asks a replica to load a model the ingress has not seen yet (a missing model is the
routes' own 404) and remembers its :class:`EngineInfo`; after that an embed is one call. A call
whose replica dies (``RayActorError``, ``ActorUnavailableError``) is sent again, to another
replica, at most ``RETRIES`` times: embedding is idempotent, so an accepted request is either
answered or gets a clear 503.

Admission control before parsing reads :class:`~embedserve.ray.queues.ReplicaQueues`: the
replicas' queues as their replies and reports last described them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from ray import exceptions as ray_errors

from embedserve.config import Settings
from embedserve.engine.base import EngineInfo
from embedserve.errors import EngineError
from embedserve.ray.queues import QueueView, ReplicaQueues
from embedserve.ray.wire import REPLICA_LOST, raise_error
from embedserve.server.errors import HTTPError
from embedserve.service.manager import FOREVER_SECONDS
from embedserve.service.metrics import Metrics
from embedserve.store import names

log = logging.getLogger("embedserve.ray")

RETRIES = 4
BACKOFF_SECONDS = (0.1, 0.3, 1.0, 2.0)  # Serve's router learns of a dead replica within ~1 s
POLL_SECONDS = 0.5
REPLICA_HIDDEN = ("info", "expires_at", "loaded_at", "last_n", "max_queue")  # not in /health
_LOST = (ray_errors.RayActorError, ray_errors.ActorUnavailableError)


class RemoteEngine:
    def __init__(self, manager: RemoteManager, key: str, info: EngineInfo) -> None:
        self._manager = manager
        self.key = key
        self.info = info

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Blocking (the collection routes call it from a worker thread)."""
        loop = self._manager.loop
        assert loop is not None
        future = asyncio.run_coroutine_threadsafe(
            self._manager.call(self.key, "token_spans", text), loop
        )
        return future.result()[1]  # type: ignore[no-any-return]


class RemoteBatcher:
    def __init__(self, manager: RemoteManager, key: str, keep_alive: float | None) -> None:
        self._manager = manager
        self.key = key
        self.keep_alive = keep_alive

    @property
    def depth(self) -> int:
        return self._manager.depth(self.key)

    def submit(
        self,
        texts: list[str],
        truncate: bool = True,
        limit: int = 0,
        *,
        on_compute: Callable[[float], None] | None = None,
        counts: bool = False,
    ) -> asyncio.Future[Any]:
        """The local batcher's ``submit``: a task resolving to ``(vectors, tokens)`` or, with
        ``counts``, ``(vectors, tokens, tokens per input)``; ``on_compute`` hears the replica's
        engine seconds for this request. Cancelling the task cancels the replica's call."""
        return asyncio.ensure_future(self._embed(list(texts), truncate, limit, on_compute, counts))

    async def _embed(
        self,
        texts: list[str],
        truncate: bool,
        limit: int,
        on_compute: Callable[[float], None] | None,
        counts: bool,
    ) -> tuple[Any, ...]:
        reply = await self._manager.call(
            self.key, "embed", texts, truncate, limit, self.keep_alive, counts
        )
        _, vectors, tokens, _load_ns, per_input, seconds = reply[:6]
        if on_compute is not None:
            on_compute(seconds)
        return (vectors, tokens, per_input) if counts else (vectors, tokens)


class RemoteModel:
    def __init__(
        self, manager: RemoteManager, key: str, info: EngineInfo, keep_alive: float | None
    ) -> None:
        self.key = key
        self.state = "ready"
        self.engine = RemoteEngine(manager, key, info)
        self.batcher = RemoteBatcher(manager, key, keep_alive)
        self.expires_at = time.time() + FOREVER_SECONDS


class RemoteManager:
    """``ModelManager``'s surface for the ingress; ``replica`` and ``board`` are Serve handles."""

    def __init__(self, settings: Settings, replica: Any, board: Any, metrics: Metrics) -> None:
        self.settings = settings
        self.replica = replica
        self.board = board
        self.metrics = metrics
        self.info: dict[str, EngineInfo] = {}
        self.reports: list[dict[str, Any]] = []
        self.unloaded: dict[str, float] = {}  # name -> when /api/delete or /api/pull unloaded it
        self.queues = ReplicaQueues()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._poller: asyncio.Task[None] | None = None
        self._closed = False
        metrics.queue_depth.collect = self._depths
        metrics.loaded.collect = self._states
        with contextlib.suppress(RuntimeError):  # built in the app's lifespan, on its loop
            self._start()

    # -- calls ----------------------------------------------------------------------------------

    async def call(self, key: str, method: str, *args: Any) -> tuple[Any, ...]:
        """One replica call for model ``key``; error replies are raised as the routes expect."""
        self._start()
        handle = getattr(self.replica.options(multiplexed_model_id=key), method)
        for attempt in range(RETRIES + 1):
            response = handle.remote(*args)
            try:
                reply: tuple[Any, ...] = await response
            except asyncio.CancelledError:
                response.cancel()  # the client went away: drop its texts from the replica's queue
                raise
            except _LOST as exc:
                log.warning("replica lost during %s (%s), attempt %d", method, exc, attempt + 1)
                if attempt < RETRIES:
                    await asyncio.sleep(BACKOFF_SECONDS[attempt])
                continue
            if method == "embed" and isinstance(reply[-1], dict):
                self.queues.note(reply[-1])  # answered or refused: the replica's queue right now
            if reply[0] != "ok":
                if reply[0] == "missing":
                    self.info.pop(key, None)
                raise_error(reply)
            return reply
        raise HTTPError(503, REPLICA_LOST)

    async def acquire(self, name: str, keep_alive: float | None = None) -> RemoteModel:
        if self._closed:
            raise EngineError("server is shutting down")
        key = names.canonical(name)
        if keep_alive is not None and keep_alive >= FOREVER_SECONDS:
            keep_alive = math.inf
        info = self.info.get(key)
        if info is None or keep_alive is not None:  # a keep_alive is news for a replica
            reply = await self.call(key, "load", keep_alive)
            info = reply[1]
            self.info[key] = info
            self._merge_report(reply[2])  # /api/ps right after a preload lists the model
        return RemoteModel(self, key, info, keep_alive)

    def release(self, model: RemoteModel) -> None:
        pass

    def batchers(self) -> list[QueueView]:
        """The replicas' queues, for admission control before parsing (see ``ray/queues.py``)."""
        return self.queues.views()

    @asynccontextmanager
    async def use(self, name: str, keep_alive: float | None = None) -> AsyncIterator[RemoteModel]:
        yield await self.acquire(name, keep_alive)

    async def unload(self, name: str) -> bool:
        try:
            key = names.canonical(name)
        except Exception:  # noqa: BLE001 - an invalid name holds nothing
            return False
        self.info.pop(key, None)
        self.queues.forget(key)
        self.unloaded[key] = time.time()  # hidden now; replicas drop it on their next report
        await self.board.unload.remote(key)
        return True

    async def close(self) -> None:
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()

    # -- the board's view ----------------------------------------------------------------------

    def _start(self) -> None:
        if self._poller is None:
            self.loop = asyncio.get_running_loop()
            self._poller = self.loop.create_task(self._poll())

    async def _poll(self) -> None:
        while not self._closed:
            with contextlib.suppress(Exception):
                self._take(await self.board.snapshot.remote())
            await asyncio.sleep(POLL_SECONDS)

    async def refresh(self) -> None:
        self._start()
        with contextlib.suppress(Exception):
            self._take(await asyncio.wait_for(self.board.snapshot.remote(), 5))

    def _take(self, reports: list[dict[str, Any]]) -> None:
        self.reports = reports
        self.queues.note_reports({**r, "models": self._current(r)} for r in reports)
        self._sum_metrics()

    def _merge_report(self, report: dict[str, Any]) -> None:
        others = [r for r in self.reports if r["id"] != report["id"]]
        self.reports = sorted([*others, report], key=lambda r: r["id"])

    def _current(self, report: dict[str, Any]) -> list[dict[str, Any]]:
        """A report's models, less those unloaded since they were loaded."""
        return [
            e
            for e in report["models"]
            if e.get("loaded_at", math.inf) > self.unloaded.get(e["name"], -math.inf)
        ]

    def _sum_metrics(self) -> None:
        sums: dict[str, dict[Any, Any]] = {}
        for report in self.reports:
            for name, series in report["metrics"].items():
                total = sums.setdefault(name, {})
                for labels, value in series.items():
                    if isinstance(value, list):
                        old = total.get(labels)
                        total[labels] = value if old is None else [a + b for a, b in zip(old, value)]
                    else:
                        total[labels] = total.get(labels, 0.0) + value
        m = self.metrics
        # the ingress's own refusals before parsing (admission middleware, label "*") stay
        own = {k: v for k, v in m.overloaded.values.items() if k == ("*",)}
        for name in ("batch_size", "engine_seconds"):
            getattr(m, name).series = sums.get(name, {})
        for name in ("real_tokens", "padded_tokens", "inputs", "overloaded"):
            getattr(m, name).values = sums.get(name, {})
        m.overloaded.values = {**m.overloaded.values, **own}

    def _merged(self) -> dict[str, dict[str, Any]]:
        """Per model across replicas: state (ready wins), queue depth (summed), latest expiry."""
        out: dict[str, dict[str, Any]] = {}
        for report in self.reports:
            for entry in self._current(report):
                merged = out.setdefault(entry["name"], {"name": entry["name"], "state": entry["state"]})
                if entry["state"] == "ready" or merged["state"] != "ready":
                    merged["state"] = entry["state"]
                if entry.get("error"):
                    merged["error"] = entry["error"]
                if "queue_depth" in entry:
                    merged["queue_depth"] = merged.get("queue_depth", 0) + entry["queue_depth"]
                if "info" in entry:
                    merged["info"] = entry["info"]
                    merged["expires_at"] = max(merged.get("expires_at", 0.0), entry["expires_at"])
        return out

    def depth(self, key: str) -> int:
        return int(self._merged().get(key, {}).get("queue_depth", 0))

    def _depths(self) -> list[tuple[tuple[str, ...], float]]:
        return [((k,), float(m["queue_depth"])) for k, m in self._merged().items() if "queue_depth" in m]

    def _states(self) -> list[tuple[tuple[str, ...], float]]:
        return [((k, m["state"]), 1.0) for k, m in self._merged().items()]

    def running(self) -> list[Any]:
        """Ready models on any replica, latest expiry first (``/api/ps``)."""
        out = []
        for key, m in self._merged().items():
            if m["state"] != "ready" or "info" not in m:
                continue
            model = RemoteModel(self, key, m["info"], None)
            model.expires_at = m["expires_at"]
            out.append(model)
        return sorted(out, key=lambda m: m.expires_at, reverse=True)

    def health(self) -> dict[str, Any]:
        models = []
        for m in self._merged().values():
            models.append({k: v for k, v in m.items() if k not in ("info", "expires_at")})

        replicas = [
            {
                "id": r["id"],
                "node": r["node"],
                "node_ip": r["node_ip"],
                "pid": r["pid"],
                "threads": r["threads"],
                "models": [
                    {k: v for k, v in e.items() if k not in REPLICA_HIDDEN}
                    for e in self._current(r)
                ],
            }
            for r in self.reports
        ]
        failed = any(m["state"] == "failed" for m in models)
        status = "degraded" if failed or not replicas else "ok"
        return {"status": status, "models": models, "replicas": replicas}
