"""One Ray Serve replica: today's ModelManager and its batchers, behind three small methods.

The replica is a plain class (``app.py`` makes it a deployment), so nothing here decides scaling
or placement. Each call arrives with the model as its multiplexed model id; ``_model`` is the
``@serve.multiplexed`` loader, so Serve's router learns which replica holds which model and sends
the next request for it there. The manager still does the real work: keep_alive, LRU, one load
per name, crash reload, and the batcher's token budget, length sorting and patience.

Every second the replica posts a report (its models, queue depths, batch metrics) to the board
and gets back the unloads asked for since (``/api/delete``, ``/api/pull``). ``check_health``
fails while a model's engine has crashed, so Ray replaces the replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from ray import serve

from embedserve.config import Settings
from embedserve.ray import queues
from embedserve.ray.wire import Reply, error_reply
from embedserve.service.manager import Loader, ModelManager
from embedserve.service.metrics import Metrics

log = logging.getLogger("embedserve.ray")

REPORT_SECONDS = 1.0
LoaderFactory = Callable[[Settings], Loader]


def metrics_snapshot(metrics: Metrics) -> dict[str, Any]:
    """The batch series of one replica, as plain dicts (summed across replicas by the ingress)."""
    return {
        "batch_size": dict(metrics.batch_size.series),
        "engine_seconds": dict(metrics.engine_seconds.series),
        "real_tokens": dict(metrics.real_tokens.values),
        "padded_tokens": dict(metrics.padded_tokens.values),
        "inputs": dict(metrics.inputs.values),
        "overloaded": dict(metrics.overloaded.values),
    }


def _pull_missing(settings: Settings, models: tuple[str, ...]) -> None:
    """Pull what this node's store lacks (the recipe bakes models into the image instead)."""
    from embedserve.store.local import ModelStore

    store = ModelStore.from_settings(settings)
    for name in models:
        if store.find(name) is None:
            log.warning("pulling %s into %s", name, settings.home)
            store.pull(name)


class _Held:
    """What ``@serve.multiplexed`` caches per model: only a name (the manager holds the engine)."""

    def __init__(self, key: str) -> None:
        self.key = key


class Replica:
    def __init__(
        self,
        settings: Settings,
        board: Any,
        threads: int,
        loader_factory: LoaderFactory | None = None,
        pull: tuple[str, ...] = (),
    ) -> None:
        self.settings = replace(settings, threads=threads)
        if pull:
            _pull_missing(self.settings, pull)
        self.executor = ThreadPoolExecutor(max(2, threads), thread_name_prefix="embedserve-model")
        self.metrics = Metrics()
        if loader_factory is None:
            from embedserve.server.app import default_loader

            loader = default_loader(self.settings)
        else:
            loader = loader_factory(self.settings)
        self.manager = ModelManager(self.settings, loader, self.executor, metrics=self.metrics)
        self.board = board
        self.threads = threads
        context = serve.get_replica_context()
        self.id = str(getattr(context.replica_id, "unique_id", context.replica_id))
        import ray

        self.node = ray.get_runtime_context().get_node_id()
        self.node_ip = ray.util.get_node_ip_address()
        self._unloaded: dict[str, float] = {}
        self._reporter: asyncio.Task[None] | None = None
        with contextlib.suppress(RuntimeError):  # Serve runs constructors on the replica's loop
            self._start_reporting()

    # -- model calls (each with serve.get_multiplexed_model_id() = the canonical name) ------------

    @serve.multiplexed(max_num_models_per_replica=3)
    async def _model(self, key: str) -> _Held:
        resident = await self.manager.acquire(key)  # ModelNotFound propagates: nothing cached
        self.manager.release(resident)
        self.board.report.remote(self.report())  # the ingress sees the new model at once
        return _Held(key)

    async def _hold(self, keep_alive: float | None) -> Any:
        self._start_reporting()
        key = serve.get_multiplexed_model_id()
        await self._model(key)
        return await self.manager.acquire(key, keep_alive)

    async def load(self, keep_alive: float | None) -> Reply:
        """Load (or keep) the model; ``("ok", EngineInfo)``. keep_alive as a request sets it."""
        try:
            resident = await self._hold(keep_alive)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back as a reply
            return error_reply(exc)
        info = resident.engine.info
        self.manager.release(resident)
        return ("ok", info, self.report())

    async def embed(
        self,
        texts: list[str],
        truncate: bool,
        limit: int,
        keep_alive: float | None,
        counts: bool = False,
    ) -> Reply:
        """Raw pooled vectors through this replica's batcher:
        ``("ok", vectors, tokens, load_ns, tokens per input or None, engine seconds, queue)``;
        ``queue`` (also last in an error reply, once the model is held) is this replica's queue
        for the model as the reply leaves (the ingress's admission control reads it)."""
        t0 = time.perf_counter_ns()
        try:
            resident = await self._hold(keep_alive)
        except BaseException as exc:  # noqa: BLE001
            return error_reply(exc)
        load_ns = time.perf_counter_ns() - t0
        spent: list[float] = []
        try:
            result = await resident.batcher.submit(
                texts, truncate, limit, counts=counts, on_compute=spent.append
            )
        except BaseException as exc:  # noqa: BLE001
            return (*error_reply(exc), self._queue(resident))
        finally:
            self.manager.release(resident)
        per_input = result[2] if counts else None
        return ("ok", result[0], result[1], load_ns, per_input, sum(spent), self._queue(resident))

    def _queue(self, resident: Any) -> dict[str, Any] | None:
        if resident.batcher is None:
            return None
        return queues.signal(self.id, resident.key, resident.batcher, resident.state)

    async def token_spans(self, text: str) -> Reply:
        try:
            resident = await self._hold(None)
        except BaseException as exc:  # noqa: BLE001
            return error_reply(exc)
        try:
            return ("ok", resident.engine.token_spans(text))
        finally:
            self.manager.release(resident)

    # -- reports, unloads, health ---------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        models = []
        for m in self.manager.models.values():
            entry: dict[str, Any] = {"name": m.key, "state": m.state}
            if m.error:
                entry["error"] = m.error
            if m.batcher is not None and m.state == "ready":
                entry["queue_depth"] = m.batcher.depth
                entry["last_n"] = m.batcher.last_n
                entry["max_queue"] = m.batcher.max_queue
            if m.engine is not None and m.state == "ready":
                entry["expires_at"] = m.expires_at
                entry["loaded_at"] = m.loaded_at
                entry["info"] = m.engine.info
            models.append(entry)
        return {
            "id": self.id,
            "pid": os.getpid(),
            "node": self.node,
            "node_ip": self.node_ip,
            "threads": self.threads,
            "models": models,
            "metrics": metrics_snapshot(self.metrics),
            "at": time.time(),
        }

    def _start_reporting(self) -> None:
        if self._reporter is None or self._reporter.done():
            self._reporter = asyncio.get_running_loop().create_task(self._report_loop())

    async def _report_loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a board restart must not stop the replica
                unloads = await self.board.report.remote(self.report())
                await self._apply_unloads(unloads)
            await asyncio.sleep(REPORT_SECONDS)

    async def _apply_unloads(self, unloads: dict[str, float]) -> None:
        for key, at in unloads.items():
            model = self.manager.models.get(key)
            if model is not None and model.loaded_at and model.loaded_at <= at:
                await self.manager.unload(key)

    async def check_health(self) -> None:
        """Serve calls this periodically; raising makes Ray replace the replica."""
        self._start_reporting()
        failed = [m for m in self.manager.models.values() if m.state == "failed"]
        if failed:
            raise RuntimeError(f"model {failed[0].key!r} failed: {failed[0].error}")

    async def __del__(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
        await self.manager.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
