"""A tiny Prometheus registry: counters, gauges and histograms rendered in the text exposition format.

No dependency: the server needs a handful of series, and the format is a few lines of text. Updates
happen on the event loop or under the GIL from worker threads; each is a dict update, so no lock is
taken on the hot path (a torn read during a scrape is harmless).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Sequence

LabelValues = tuple[str, ...]


def _fmt(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: LabelValues, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help, labelnames)
        self.values: dict[LabelValues, float] = {}

    def inc(self, amount: float = 1.0, labels: LabelValues = ()) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, labels: LabelValues = ()) -> float:
        return self.values.get(labels, 0.0)

    def render(self) -> list[str]:
        lines = self.header()
        items = list(self.values.items()) or ([((), 0.0)] if not self.labelnames else [])
        for labels, value in items:
            lines.append(f"{self.name}{_labels(self.labelnames, labels)} {_fmt(value)}")
        return lines


class Gauge(_Metric):
    """A gauge whose values are read from a callback at scrape time (no bookkeeping to drift)."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        collect: Callable[[], Iterable[tuple[LabelValues, float]]] | None = None,
    ) -> None:
        super().__init__(name, help, labelnames)
        self.collect = collect

    def render(self) -> list[str]:
        lines = self.header()
        for labels, value in self.collect() if self.collect else ():
            lines.append(f"{self.name}{_labels(self.labelnames, labels)} {_fmt(value)}")
        return lines


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self, name: str, help: str, buckets: Sequence[float], labelnames: Sequence[str] = ()
    ) -> None:
        super().__init__(name, help, labelnames)
        self.buckets = tuple(sorted(buckets))
        self.series: dict[LabelValues, list[float]] = {}  # counts per bucket..., +Inf, sum

    def observe(self, value: float, labels: LabelValues = ()) -> None:
        row = self.series.get(labels)
        if row is None:
            row = self.series[labels] = [0.0] * (len(self.buckets) + 2)
        row[bisect.bisect_left(self.buckets, value)] += 1
        row[-1] += value

    def count(self, labels: LabelValues = ()) -> int:
        row = self.series.get(labels)
        return int(sum(row[:-1])) if row else 0

    def render(self) -> list[str]:
        lines = self.header()
        for labels, row in list(self.series.items()):
            cumulative = 0.0
            for bound, n in zip((*self.buckets, math.inf), row[:-1]):
                cumulative += n
                le = f'le="{_fmt(bound)}"'
                lines.append(
                    f"{self.name}_bucket{_labels(self.labelnames, labels, le)} {_fmt(cumulative)}"
                )
            lines.append(f"{self.name}_sum{_labels(self.labelnames, labels)} {_fmt(row[-1])}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, labels)} {_fmt(cumulative)}")
        return lines


class Metrics:
    """The server's series. One instance per app; the batcher and the HTTP layer update it."""

    def __init__(self) -> None:
        self.requests = Counter(
            "embedserve_http_responses_total",
            "HTTP responses by route and status",
            ("path", "status"),
        )
        self.latency = Histogram(
            "embedserve_http_request_duration_seconds",
            "HTTP request latency in seconds, by route",
            (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1, 2, 4, 8),
            ("path",),
        )
        self.batch_size = Histogram(
            "embedserve_batch_size",
            "inputs per engine batch",
            (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            ("model",),
        )
        self.engine_seconds = Histogram(
            "embedserve_batch_duration_seconds",
            "engine time per batch in seconds",
            (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1, 2, 4),
            ("model",),
        )
        self.real_tokens = Counter(
            "embedserve_batch_real_tokens_total",
            "real (unpadded) tokens sent to the engine",
            ("model",),
        )
        self.padded_tokens = Counter(
            "embedserve_batch_padded_tokens_total",
            "padded tokens (longest x count) sent to the engine",
            ("model",),
        )
        self.inputs = Counter("embedserve_inputs_total", "inputs embedded", ("model",))
        self.overloaded = Counter(
            "embedserve_overloaded_total", "requests rejected because a queue was full", ("model",)
        )
        self.queue_depth = Gauge(
            "embedserve_queue_depth", "inputs waiting in each model's queue", ("model",)
        )
        self.loaded = Gauge(
            "embedserve_models_loaded", "resident models by state", ("model", "state")
        )
        self._all: list[_Metric] = [
            self.requests,
            self.latency,
            self.batch_size,
            self.engine_seconds,
            self.real_tokens,
            self.padded_tokens,
            self.inputs,
            self.overloaded,
            self.queue_depth,
            self.loaded,
        ]

    def add(self, *metrics: _Metric) -> None:
        """More series (e.g. the embedding cache's), rendered after these."""
        self._all.extend(metrics)

    def observe_batch(self, model: str, lengths: Sequence[int]) -> None:
        key = (model,)
        self.batch_size.observe(len(lengths), key)
        self.real_tokens.inc(sum(lengths), key)
        self.padded_tokens.inc(max(lengths, default=0) * len(lengths), key)
        self.inputs.inc(len(lengths), key)

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._all:
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
