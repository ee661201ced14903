"""Small measuring functions, free of any engine: one timed call, percentiles, process memory.

Kept apart so other drivers (the server's load generator) can reuse them. ``clock`` arguments
default to :func:`time.perf_counter`; tests pass a fake one.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Clock = Callable[[], float]


def timed(fn: Callable[[], Any], clock: Clock = time.perf_counter) -> float:
    """Seconds ``fn()`` took."""
    t0 = clock()
    fn()
    return clock() - t0


def single_latencies(
    encode_one: Callable[[str], Any], texts: Sequence[str], clock: Clock = time.perf_counter
) -> list[float]:
    """Seconds of one call per text (one text per call)."""
    return [timed(lambda t=t: encode_one(t), clock) for t in texts]  # type: ignore[misc]


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation, numpy's default); NaN for no samples."""
    if not samples:
        return float("nan")
    return float(np.percentile(np.asarray(samples, dtype=np.float64), q))


def summarize(seconds: Sequence[float], statistic: str = "best") -> float:
    """One number from repeated timings: ``best`` (the least disturbed pass) or ``median``."""
    if not seconds:
        return float("nan")
    if statistic == "best":
        return min(seconds)
    if statistic == "median":
        return float(statistics.median(seconds))
    raise ValueError(f"unknown statistic {statistic!r} (best, median)")


def rate(count: float, seconds: float) -> float:
    """``count / seconds``, NaN when nothing was timed."""
    return count / seconds if seconds > 0 else float("nan")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (``ru_maxrss``), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def current_rss_mb(status: Path = Path("/proc/self/status")) -> float:
    """Resident memory now (``VmRSS`` of /proc/self/status), in MiB; NaN where there is no /proc."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return float("nan")
