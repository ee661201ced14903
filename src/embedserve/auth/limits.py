"""In-flight limits per key, in memory: distinct models in flight, and requests per minute.

*Concurrent models*: a key may have requests in flight for at most N distinct models. A request
for a model the key already has in flight is never refused for this; one for a new model while N
are busy is. Check and insert happen with no ``await`` between them, so on one event loop the rule
holds exactly however many requests race. (Several server processes each hold their own table.)
"""

from __future__ import annotations

import math
from collections import deque

from embedserve.errors import LimitExceeded


class InFlight:
    def __init__(self) -> None:
        self._models: dict[str, dict[str, int]] = {}  # key id -> model -> requests in flight

    def models(self, key_id: str) -> list[str]:
        return sorted(self._models.get(key_id, {}))

    def enter(self, key_id: str, model: str, limit: float) -> None:
        busy = self._models.setdefault(key_id, {})
        if model not in busy and len(busy) >= limit:
            names = ", ".join(sorted(busy))
            raise LimitExceeded(
                f"concurrent model limit reached: your plan runs {int(limit)} model"
                f"{'s' if limit != 1 else ''} at a time and {names} "
                f"{'is' if len(busy) == 1 else 'are'} busy; retry when "
                f"{'it finishes' if len(busy) == 1 else 'one finishes'}",
                limit="concurrent_models",
                retry_after=1,
            )
        busy[model] = busy.get(model, 0) + 1

    def leave(self, key_id: str, model: str) -> None:
        busy = self._models.get(key_id)
        if not busy or model not in busy:
            return
        busy[model] -= 1
        if busy[model] <= 0:
            del busy[model]
        if not busy:
            del self._models[key_id]


class RateWindow:
    """Requests per minute per key: a sliding 60 s window of request times."""

    def __init__(self) -> None:
        self._times: dict[str, deque[float]] = {}

    def used(self, key_id: str, now: float) -> int:
        times = self._times.get(key_id)
        if not times:
            return 0
        while times and times[0] <= now - 60:
            times.popleft()
        return len(times)

    def hit(self, key_id: str, limit: float, now: float) -> None:
        if math.isinf(limit):
            return
        used = self.used(key_id, now)
        times = self._times.setdefault(key_id, deque())
        if used >= limit:
            wait = max(1.0, times[0] + 60 - now) if times else 60.0
            raise LimitExceeded(
                f"rate limit reached: your plan allows {int(limit)} requests per minute; "
                f"retry in {math.ceil(wait)} s",
                limit="requests_per_minute",
                retry_after=wait,
            )
        times.append(now)
