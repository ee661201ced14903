"""The board: a one-replica deployment where model replicas post what they hold.

Serve routes each request to one replica, so nothing can ask "every replica" a question; instead
each replica posts a report every second (``Replica.report``) and the ingress reads the latest
ones. A report older than ``STALE_SECONDS`` is a replica that is gone (killed, replaced, scaled
down) and is dropped. Unloads go the other way: ``/api/delete`` and ``/api/pull`` post one, and
each replica applies it to models it loaded before it, on its next report.
"""

from __future__ import annotations

import time
from typing import Any

STALE_SECONDS = 5.0
UNLOAD_MEMORY_SECONDS = 600.0


class Board:
    def __init__(self) -> None:
        self.reports: dict[str, dict[str, Any]] = {}
        self.unloads: dict[str, float] = {}  # canonical name -> when it was asked

    def report(self, report: dict[str, Any]) -> dict[str, float]:
        self.reports[report["id"]] = report
        now = time.time()
        self.unloads = {k: t for k, t in self.unloads.items() if now - t < UNLOAD_MEMORY_SECONDS}
        return dict(self.unloads)

    def unload(self, key: str) -> None:
        self.unloads[key] = time.time()

    def snapshot(self) -> list[dict[str, Any]]:
        now = time.time()
        self.reports = {
            k: r for k, r in self.reports.items() if now - r["at"] < STALE_SECONDS
        }
        return sorted(self.reports.values(), key=lambda r: r["id"])
