"""Admission control: refuse work the server cannot queue *before* reading its body, and pace the
refusals so that a flood of them cannot take the CPU from the work already accepted.

Under overload a client without backoff (wrk, a retry loop) sends its next request the moment its
503 arrives. Answering such a request costs the event loop ~50-300 us however early it is refused,
so refusing as fast as clients can ask lets the refusals eat a core of a two-core machine and the
engine starves (measured before this module: 256 connections x 16 texts served 39 % of the texts/s
that 8 connections get). Two things fix it:

* :meth:`Admission.saturated` says, from the queue depths alone, that the next embed request
  would not fit; the front then answers 503 without reading or parsing the body, loading or
  tokenising anything.
* :meth:`Admission.refusal_delay` is a token bucket over refusals: up to ``rate`` refusals a
  second (and a burst) are answered at once; past that a refusal waits its turn (asyncio sleep,
  no CPU) before it is sent. A no-backoff flood is thus answered at a bounded rate whose CPU is
  a few percent of a core, whatever the number of connections, and every client still gets its
  503 with ``Retry-After``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol


class _Queue(Protocol):
    depth: int
    last_n: int
    max_queue: int
    state: str


class Admission:
    def __init__(
        self,
        queues: Callable[[], Iterable[_Queue]],
        *,
        rate: float = 500.0,
        burst: float = 100.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queues = queues
        self.rate = max(1.0, rate)
        self.burst = max(1.0, burst)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()
        self.refused = 0

    def saturated(self) -> bool:
        """True when every ready model's queue is too full for a request like its last one.

        With no model resident (or one still loading) nothing is refused here: the request goes on
        and the batcher's own check, after parsing, stays the exact one."""
        ready = [q for q in self._queues() if q.state == "ready"]
        return bool(ready) and all(q.depth and q.depth + max(1, q.last_n) > q.max_queue for q in ready)

    def refusal_delay(self) -> float:
        """Seconds this refusal should wait before it is answered (0 within the rate)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= 1.0
        self.refused += 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate
