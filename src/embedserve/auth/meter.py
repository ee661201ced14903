"""The usage meter: per key, what the engine actually spent, in 5 h session and 7-day windows.

Requests add to an in-memory *pending* delta per key; :meth:`UsageMeter.flush` (every few
seconds, and at shutdown) adds the deltas to the store and reads back the windows, which then
include what other processes metered for the same key. A key's current use in a window is the
stored window (unless it has expired) plus what is pending or being flushed plus the estimates
reserved by its requests in flight; admission compares that with the plan.

Admission reserves a cautious estimate per request in flight, so concurrent requests cannot all
squeeze into the last bit of a budget. A request admitted while the budget had room always
finishes; what it spends past the budget is metered (``overage``) but not charged, so a window's
remaining budget never goes below zero.

Windows start at a key's first request after the previous window ended (a *session* lasts 5 hours
from its first request, a week 7 days), so ``resets_at = started_at + length``.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

from embedserve.auth.plans import Plan
from embedserve.auth.store import WINDOWS, KeyStore, UsageDelta, WindowUsage
from embedserve.errors import LimitExceeded

log = logging.getLogger("embedserve.auth")


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


_LIMIT_FIELD = {"session": "session_compute_seconds", "weekly": "weekly_compute_seconds"}


@dataclass(frozen=True)
class WindowView:
    window: str
    started_at: float | None
    resets_at: float
    requests: int
    inputs: int
    tokens: int
    compute_seconds: float
    limit: float

    @property
    def charged(self) -> float:
        """What counts against the budget: never more than the budget itself."""
        return min(self.compute_seconds, self.limit)

    @property
    def overage(self) -> float:
        """Compute past the budget, spent by requests admitted while it had room (metered, not
        charged: a request that was let in always finishes)."""
        return max(0.0, self.compute_seconds - self.limit)

    @property
    def remaining(self) -> float:
        return self.limit - self.charged


class UsageMeter:
    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self._lock = threading.Lock()  # record() runs on the loop, flush() in a worker thread
        self._flush_lock = threading.Lock()
        self._stored: dict[str, dict[str, WindowUsage]] = {}
        self._pending: dict[str, UsageDelta] = {}
        self._flushing: dict[str, UsageDelta] = {}
        self._reserved: dict[str, float] = {}  # key id -> estimated seconds of requests in flight
        # per model: running mean and slowly decaying peak of one input's cost, for reservations
        self._costs: dict[str, list[float]] = {}

    # -- recording ------------------------------------------------------------------------------

    def record(
        self,
        key_id: str,
        now: float,
        *,
        requests: int = 0,
        inputs: int = 0,
        tokens: int = 0,
        seconds: float = 0.0,
        model: str = "",
    ) -> None:
        delta = UsageDelta(now, now, requests, inputs, tokens, seconds)
        with self._lock:
            pending = self._pending.get(key_id)
            if pending is None:
                self._pending[key_id] = delta
            else:
                pending.add(delta)
        if inputs and seconds > 0:
            cost = seconds / inputs
            stats = self._costs.get(model)
            if stats is None:
                self._costs[model] = [cost, cost]
            else:
                stats[0] += 0.1 * (cost - stats[0])
                stats[1] = max(cost, 0.99 * stats[1])

    def estimate(self, inputs: int, model: str = "") -> float:
        """What to reserve for a request of ``inputs`` texts of ``model``: cautious (the recent
        peak cost per input, between 2x and 4x the mean), so a budget's last requests rarely
        run past it."""
        mean, peak = self._costs.get(model) or self._costs.get("") or (0.005, 0.005)
        per_input = min(max(peak, 2.0 * mean), 4.0 * mean)
        return per_input * max(1, inputs)

    def reserve(self, key_id: str, seconds: float) -> None:
        self._reserved[key_id] = self._reserved.get(key_id, 0.0) + seconds

    def unreserve(self, key_id: str, seconds: float) -> None:
        left = self._reserved.get(key_id, 0.0) - seconds
        if left <= 1e-12:
            self._reserved.pop(key_id, None)
        else:
            self._reserved[key_id] = left

    # -- views ----------------------------------------------------------------------------------

    def load(self, key_id: str) -> None:
        """Read a key's stored windows (blocking) the first time it is seen in this process."""
        if key_id not in self._stored:
            windows = self.store.usage(key_id)
            with self._lock:
                self._stored.setdefault(key_id, windows)

    def view(self, key_id: str, plan: Plan, now: float) -> dict[str, WindowView]:
        with self._lock:
            stored = self._stored.get(key_id, {})
            local = [d for d in (self._flushing.get(key_id), self._pending.get(key_id)) if d]
        out = {}
        for window, length in WINDOWS.items():
            row = stored.get(window)
            limit = float(getattr(plan, _LIMIT_FIELD[window]))
            if row is not None and now < row.resets_at:
                started: float | None = row.started_at
                totals = [row.requests, row.inputs, row.tokens, row.compute_seconds]
            else:
                started = min((d.first_at for d in local), default=None)
                totals = [0, 0, 0, 0.0]
            for d in local:
                totals[0] += d.requests
                totals[1] += d.inputs
                totals[2] += d.tokens
                totals[3] += d.compute_seconds
            resets = (started if started is not None else now) + length
            out[window] = WindowView(
                window,
                started,
                resets,
                int(totals[0]),
                int(totals[1]),
                int(totals[2]),
                float(totals[3]),
                limit,
            )
        return out

    def check(self, key_id: str, plan: Plan, now: float, inputs: int, model: str = "") -> float:
        """Raise ``LimitExceeded`` if this request's estimate does not fit a window; returns the
        estimate (reserve it while the request runs)."""
        estimate = self.estimate(inputs, model)
        reserved = self._reserved.get(key_id, 0.0)
        for window, view in self.view(key_id, plan, now).items():
            if math.isinf(view.limit):
                continue
            if view.compute_seconds + reserved + estimate > view.limit:
                raise LimitExceeded(
                    f"{window} usage limit reached: {view.compute_seconds:.2f} of "
                    f"{view.limit:g} compute-seconds used; resets at {rfc3339(view.resets_at)}",
                    limit=window,
                    retry_after=max(1.0, view.resets_at - now),
                )
        return estimate

    # -- durability -----------------------------------------------------------------------------

    def flush(self) -> int:
        """Write pending deltas (blocking). On failure they stay pending. Returns keys written."""
        with self._flush_lock:
            with self._lock:
                if not self._pending:
                    return 0
                self._flushing, self._pending = self._pending, {}
            try:
                updated = self.store.record_usage(self._flushing)
            except Exception:
                log.warning("writing usage failed; kept for the next flush", exc_info=True)
                with self._lock:
                    for key_id, delta in self._flushing.items():
                        if key_id in self._pending:
                            delta.add(self._pending[key_id])
                        self._pending[key_id] = delta
                    self._flushing = {}
                return 0
            with self._lock:
                self._stored.update(updated)
                self._flushing = {}
            return len(updated)
