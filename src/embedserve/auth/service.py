"""The auth service: key lookup, the plan table, in-flight limits and the usage meter.

The middleware (``auth/middleware.py``) asks it three things per request: who is calling
(:meth:`AuthService.authenticate`), may they make one more request now (:meth:`check_rate`), and,
for a request that runs a model, may they run it (:meth:`admit`, which returns a :class:`Ticket`
holding the concurrent-model slot and the budget reservation until the request ends). Routes
never see keys; the shared embed path only reports what a request cost to ``Ticket.record``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from embedserve.auth.keys import KeyRecord, VerifiedCache, key_prefix, looks_like_key, verify_key
from embedserve.auth.limits import InFlight, RateWindow
from embedserve.auth.meter import UsageMeter, rfc3339
from embedserve.auth.plans import Plan
from embedserve.auth.store import KeyStore
from embedserve.errors import Forbidden, TooManyInputs, Unauthorized

log = logging.getLogger("embedserve.auth")

FLUSH_SECONDS = 2.0  # usage reaches the store at least this often (and at shutdown)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the key's record (never the key) and its plan."""

    record: KeyRecord
    plan: Plan

    @property
    def key_id(self) -> str:
        return self.record.id

    def allows(self, model: str) -> bool:
        """``model`` is canonical (``name:tag``); a pattern without a tag matches every tag."""
        patterns = self.record.models
        if not patterns:
            return True
        return any(
            fnmatch.fnmatchcase(model, p) or fnmatch.fnmatchcase(model, p + ":*") for p in patterns
        )


class Ticket:
    """One admitted model request: releases its slot and reservation once, meters what it used."""

    def __init__(
        self, service: AuthService, principal: Principal, model: str, reserved: float
    ) -> None:
        self.service = service
        self.principal = principal
        self.model = model
        self.reserved = reserved
        self.done = False

    def record(self, inputs: int, tokens: int, seconds: float) -> None:
        """Called by the embed path with what the engine spent on this request."""
        self.service.meter.record(
            self.principal.key_id,
            self.service.clock(),
            inputs=inputs,
            tokens=tokens,
            seconds=seconds,
            model=self.model,
        )

    def release(self) -> None:
        if self.done:
            return
        self.done = True
        key_id = self.principal.key_id
        self.service.in_flight.leave(key_id, self.model)
        self.service.meter.unreserve(key_id, self.reserved)
        self.service.meter.record(key_id, self.service.clock(), requests=1)


class AuthService:
    def __init__(
        self,
        store: KeyStore,
        plans: dict[str, Plan],
        *,
        flush_seconds: float = FLUSH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.plans = plans
        self.flush_seconds = flush_seconds
        self.clock = clock
        self.meter = UsageMeter(store)
        self.in_flight = InFlight()
        self.rate = RateWindow()
        self._verified = VerifiedCache()
        self._records: dict[str, KeyRecord] = {}
        self._verifying: dict[bytes, asyncio.Future[str | None]] = {}
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self._refresh)
        self._task = asyncio.get_running_loop().create_task(self._flusher(), name="auth-flush")

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await asyncio.to_thread(self.meter.flush)
                await asyncio.to_thread(self._refresh)
            except Exception:  # the next tick tries again; usage stays pending in memory
                log.warning("auth store sync failed", exc_info=True)

    def _refresh(self) -> None:
        """Reload key records, so revocations and plan changes from the CLI apply within a tick."""
        records = {r.id: r for r in self.store.list()}
        for key_id, record in records.items():
            if record.revoked:
                self._verified.forget(key_id)
        self._records = records

    async def close(self) -> None:
        """Stop the flusher and write what is pending (also on SIGTERM: the lifespan ends)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self.meter.flush)

    # -- authentication -------------------------------------------------------------------------

    async def authenticate(self, key: str | None) -> Principal:
        """The caller behind ``key``; ``Unauthorized`` for a missing, unknown or revoked one."""
        if not key or not looks_like_key(key):
            raise Unauthorized("unauthorized")
        key_id = self._verified.get(key)
        if key_id is None:
            key_id = await self._verify_once(key)
            if key_id is None:
                raise Unauthorized("unauthorized")
        record = self._records.get(key_id)
        if record is None or record.revoked:
            raise Unauthorized("unauthorized")
        plan = self.plans.get(record.plan)
        if plan is None:
            raise Forbidden(f"this key's plan {record.plan!r} is not offered by this server")
        return Principal(record, plan)

    async def _verify_once(self, key: str) -> str | None:
        """One slow hash per key however many connections present it at once (single flight):
        a client opening 100 connections with a new key must not run 100 scrypts (16 MiB each)."""
        tag = self._verified.tag(key)
        pending = self._verifying.get(tag)
        if pending is None:
            pending = asyncio.ensure_future(asyncio.to_thread(self._verify, key))
            self._verifying[tag] = pending

            def done(fut: asyncio.Future[str | None]) -> None:
                self._verifying.pop(tag, None)
                if not fut.cancelled() and fut.exception() is None and fut.result() is not None:
                    self._verified.put(key, fut.result())  # type: ignore[arg-type]

            pending.add_done_callback(done)
        return await asyncio.shield(pending)

    def _verify(self, key: str) -> str | None:
        """Blocking: find the record by prefix (the store, if a key is new) and check the hash."""
        prefix = key_prefix(key)
        candidates = [r for r in self._records.values() if r.prefix == prefix]
        if not candidates:
            candidates = self.store.by_prefix(prefix)
        for record in candidates:
            if verify_key(key, record.hash):
                self._records.setdefault(record.id, record)
                self.meter.load(record.id)
                return record.id
        return None

    # -- limits ---------------------------------------------------------------------------------

    def check_rate(self, principal: Principal) -> None:
        self.rate.hit(principal.key_id, principal.plan.requests_per_minute, self.clock())

    def admit(self, principal: Principal, model: str, inputs: int) -> Ticket:
        """Admission for a request that runs ``model`` over ``inputs`` texts; raises
        ``Forbidden`` (model outside the key's patterns), ``TooManyInputs`` (plan's per-request
        limit) or ``LimitExceeded`` (concurrent models, session or weekly budget)."""
        if not principal.allows(model):
            raise Forbidden(f"this key may not use model '{model}'")
        plan = principal.plan
        if inputs > plan.max_inputs:
            raise TooManyInputs(inputs, int(plan.max_inputs))
        now = self.clock()
        estimate = self.meter.check(principal.key_id, plan, now, inputs, model)
        self.in_flight.enter(principal.key_id, model, plan.concurrent_models)
        self.meter.reserve(principal.key_id, estimate)
        return Ticket(self, principal, model, estimate)

    # -- reports --------------------------------------------------------------------------------

    def report(self, principal: Principal) -> dict[str, Any]:
        """``GET /api/usage``: the calling key's plan, windows, used and remaining."""
        now = self.clock()
        plan = principal.plan
        windows = {}
        for name, view in self.meter.view(principal.key_id, plan, now).items():
            windows[name] = {
                "started_at": rfc3339(view.started_at) if view.started_at is not None else None,
                "resets_at": rfc3339(view.resets_at),
                "requests": view.requests,
                "inputs": view.inputs,
                "tokens": view.tokens,
                "compute_seconds": round(view.compute_seconds, 6),
                "overage_compute_seconds": round(view.overage, 6),
                "limit_compute_seconds": None if math.isinf(view.limit) else view.limit,
                "remaining_compute_seconds": (
                    None if math.isinf(view.limit) else round(view.remaining, 6)
                ),
            }
        rpm = plan.requests_per_minute
        return {
            "name": principal.record.name,
            "plan": plan.to_dict(),
            "windows": windows,
            "requests_per_minute": {
                "limit": None if math.isinf(rpm) else int(rpm),
                "used": self.rate.used(principal.key_id, now),
            },
            "models_in_flight": self.in_flight.models(principal.key_id),
        }
