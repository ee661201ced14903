"""Run engines over text sets, interleaved, and turn the timings into rows with ratios.

``for r in range(repeat): for engine: for text set: time one encode() of the whole set, then
single-text calls`` — every engine sees the same machine minute, which matters on a shared box.
Each cell keeps all its timings; :func:`make_rows` reduces them (best or median of the repeats)
and divides by the baseline engine's cell on the same texts.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedserve.bench.engines import ST_NAME, BenchEngine, LoadInfo
from embedserve.bench.timing import (
    Clock,
    current_rss_mb,
    peak_rss_mb,
    percentile,
    rate,
    single_latencies,
    summarize,
    timed,
)

DEFAULT_LIMIT_SHORT = 1000
DEFAULT_LIMIT_LONG = 150
DEFAULT_SINGLE = 50  # single-text calls per cell and repeat
_SEED = 0  # texts are a seeded sample, so a limit does not pick one genre of STS-B


@dataclass(frozen=True)
class TextSet:
    name: str
    texts: list[str]
    source: str


def _sample(texts: list[str], limit: int | None) -> list[str]:
    if limit is None or limit >= len(texts):
        return texts
    order = np.random.default_rng(_SEED).permutation(len(texts))[:limit]
    return [texts[i] for i in sorted(order)]


def short_texts(data_dir: Path | None = None, limit: int | None = DEFAULT_LIMIT_SHORT) -> TextSet:
    """Unique STS-B dev sentences."""
    from embedserve.eval.data import load_stsb

    unique = list(dict.fromkeys(s for a, b, _ in load_stsb("dev", data_dir) for s in (a, b)))
    return TextSet("short", _sample(unique, limit), "STS-B dev sentences (unique)")


def long_texts(data_dir: Path | None = None, limit: int | None = DEFAULT_LIMIT_LONG) -> TextSet:
    """CISI documents: title + " " + abstract."""
    from embedserve.eval.data import load_cisi

    docs = list(load_cisi(data_dir)[0].values())
    return TextSet("long", _sample(docs, limit), "CISI documents (title + abstract)")


def file_texts(path: Path, limit: int | None = None) -> TextSet:
    """One text per non-empty line of a UTF-8 file."""
    from embedserve.errors import InputFileError

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputFileError(f"{path} is not UTF-8") from None
    texts = [ln for ln in lines if ln.strip()]
    if not texts:
        raise InputFileError(f"{path} holds no texts")
    return TextSet(path.name, texts[:limit] if limit else texts, str(path))


@dataclass
class Cell:
    """All timings of one engine on one text set."""

    engine: str
    kind: str
    texts: str
    n_texts: int
    tokens: int
    seconds: list[float] = field(default_factory=list)  # one whole-set encode() per repeat
    single_s: list[float] = field(default_factory=list)  # single-text calls, all repeats


Step = Callable[[str], None]


def run_interleaved(
    engines: Sequence[BenchEngine],
    text_sets: Sequence[TextSet],
    *,
    repeat: int = 3,
    single: int = DEFAULT_SINGLE,
    clock: Clock = time.perf_counter,
    warmup: bool = True,
    step: Step | None = None,
) -> list[Cell]:
    """Cells in (engine, text set) order. ``step`` is told what runs next (for progress)."""
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    cells = {
        (e.name, t.name): Cell(e.name, e.kind, t.name, len(t.texts), e.count_tokens(t.texts))
        for e in engines
        for t in text_sets
    }
    if warmup:  # first calls allocate arenas and pick kernels: keep them out of the timings
        for e in engines:
            for t in text_sets:
                e.encode(t.texts[:32])
                e.encode_one(t.texts[0])
    for r in range(repeat):
        for e in engines:
            for t in text_sets:
                if step is not None:
                    step(f"pass {r + 1}/{repeat}: {e.name} on {t.name} texts")
                cell = cells[(e.name, t.name)]
                cell.seconds.append(timed(lambda e=e, t=t: e.encode(t.texts), clock))  # type: ignore[misc]
                cell.single_s.extend(single_latencies(e.encode_one, t.texts[:single], clock))
    return list(cells.values())


@dataclass
class Row:
    engine: str
    kind: str
    texts: str
    n_texts: int
    tokens: int
    seconds: float  # the statistic of the repeats
    texts_per_s: float
    tokens_per_s: float
    ratio: float | None  # texts/s over the baseline's on the same texts; None: no baseline
    p50_ms: float
    p99_ms: float
    seconds_all: list[float]


def make_rows(cells: Sequence[Cell], statistic: str = "best", baseline: str = ST_NAME) -> list[Row]:
    rows = []
    base = {c.texts: c for c in cells if c.engine == baseline}
    for c in cells:
        s = summarize(c.seconds, statistic)
        ratio = None
        if c.texts in base:
            ratio = rate(c.n_texts, s) / rate(
                base[c.texts].n_texts, summarize(base[c.texts].seconds, statistic)
            )
        ms = [x * 1e3 for x in c.single_s]
        rows.append(
            Row(
                engine=c.engine,
                kind=c.kind,
                texts=c.texts,
                n_texts=c.n_texts,
                tokens=c.tokens,
                seconds=s,
                texts_per_s=rate(c.n_texts, s),
                tokens_per_s=rate(c.tokens, s),
                ratio=ratio,
                p50_ms=percentile(ms, 50),
                p99_ms=percentile(ms, 99),
                seconds_all=list(c.seconds),
            )
        )
    return rows


@dataclass
class BenchReport:
    rows: list[Row]
    loads: list[LoadInfo]
    text_sets: list[TextSet]
    repeat: int
    statistic: str = "best"
    baseline: str | None = None
    threads: int | None = None
    peak_rss_mb: float = field(default_factory=peak_rss_mb)
    current_rss_mb: float = field(default_factory=current_rss_mb)

    def to_json(self) -> dict[str, Any]:
        def clean(x: Any) -> Any:  # NaN is not JSON
            if isinstance(x, float) and math.isnan(x):
                return None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, list):
                return [clean(v) for v in x]
            return x

        return clean(
            {
                "machine": {
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                    "threads": self.threads,
                },
                "repeat": self.repeat,
                "statistic": self.statistic,
                "baseline": self.baseline,
                "text_sets": [
                    {"name": t.name, "texts": len(t.texts), "source": t.source}
                    for t in self.text_sets
                ],
                "loads": [asdict(info) for info in self.loads],
                "results": [asdict(r) for r in self.rows],
                "memory": {"peak_rss_mb": self.peak_rss_mb, "current_rss_mb": self.current_rss_mb},
            }
        )
