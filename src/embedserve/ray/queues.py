"""The ingress's view of every replica's batcher queue, for admission control before parsing.

In one process, :class:`~embedserve.service.admission.Admission` reads the batchers' depths
directly. Under Ray the batchers live in the replicas, so the ingress keeps the freshest depth it
has heard of each (replica, model) queue, from two sources:

* every embed reply (answered or refused) carries its replica's queue at the moment of the reply:
  under load replies arrive many times a second, and a replica that refuses a request for a full
  queue says so at once;
* the board's reports (each replica, every second) cover a replica that has sent no reply lately.

The newer of the two wins (by the replica's own clock); a queue not heard of for ``STALE_SECONDS``
(its replica is gone) no longer counts. :meth:`ReplicaQueues.views` gives ``Admission`` what it
reads from local batchers (``depth``, ``last_n``, ``max_queue``, ``state``), one per queue, so the
same rule holds: refuse up front only when *every* ready queue is too full for a request like its
last one. A view can be up to one report (~1 s) old when no replies flow; the replica's batcher
still makes the exact check after parsing, with the same 503.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from embedserve.ray.board import STALE_SECONDS


@dataclass
class QueueView:
    replica: str
    name: str
    depth: int
    last_n: int
    max_queue: int
    state: str
    at: float  # the replica's clock when it was measured


def signal(replica: str, name: str, batcher: Any, state: str) -> dict[str, Any]:
    """What a replica sends about one model's queue (in replies and in its reports)."""
    return {
        "replica": replica,
        "name": name,
        "queue_depth": batcher.depth,
        "last_n": batcher.last_n,
        "max_queue": batcher.max_queue,
        "state": state,
        "at": time.time(),
    }


class ReplicaQueues:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._views: dict[tuple[str, str], QueueView] = {}
        self._clock = clock

    def note(self, sig: dict[str, Any] | None) -> None:
        """Take one signal (from a reply or a report) if it is newer than what is known."""
        if not sig or "queue_depth" not in sig:
            return
        key = (sig["replica"], sig["name"])
        old = self._views.get(key)
        if old is not None and old.at >= sig["at"]:
            return
        self._views[key] = QueueView(
            sig["replica"],
            sig["name"],
            int(sig["queue_depth"]),
            int(sig.get("last_n", 0)),
            int(sig.get("max_queue", 1)),
            str(sig.get("state", "ready")),
            float(sig["at"]),
        )

    def note_reports(self, reports: Iterable[dict[str, Any]]) -> None:
        for report in reports:
            for entry in report["models"]:
                if "queue_depth" in entry:
                    self.note({**entry, "replica": report["id"], "at": report["at"]})

    def forget(self, name: str) -> None:
        """A model unloaded everywhere (``/api/delete``): its queues are gone."""
        self._views = {k: v for k, v in self._views.items() if v.name != name}

    def views(self) -> list[QueueView]:
        now = self._clock()
        self._views = {k: v for k, v in self._views.items() if now - v.at < STALE_SECONDS}
        return list(self._views.values())
