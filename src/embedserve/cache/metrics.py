"""The cache's Prometheus series, read from the cache at scrape time (nothing to keep in step)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from embedserve.cache.remote import ASK_EVERY
from embedserve.cache.tiered import EmbeddingCache
from embedserve.service.metrics import Gauge, LabelValues

Series = Callable[[], Iterable[tuple[LabelValues, float]]]


class CallbackCounter(Gauge):
    """A counter whose value is read at scrape time."""

    kind = "counter"


def cache_series(cache: EmbeddingCache) -> list[Gauge]:
    memory, remote = cache.memory, cache.remote

    def hits() -> Iterable[tuple[LabelValues, float]]:
        return [((level,), float(n)) for level, n in cache.hits.items()]

    def one(fn: Callable[[], float]) -> Series:
        return lambda: [((), float(fn()))]

    series: list[Gauge] = [
        CallbackCounter(
            "embedserve_cache_hits_total", "inputs answered by the embedding cache, by level",
            ("level",), hits,
        ),
        CallbackCounter(
            "embedserve_cache_misses_total", "inputs the embedding cache did not have",
            (), one(lambda: cache.misses),
        ),
        Gauge(
            "embedserve_cache_bytes", "bytes held by the in-process embedding cache",
            (), one(lambda: memory.bytes if memory else 0),
        ),
        Gauge(
            "embedserve_cache_entries", "vectors held by the in-process embedding cache",
            (), one(lambda: len(memory) if memory else 0),
        ),
        CallbackCounter(
            "embedserve_cache_evictions_total", "entries evicted from the in-process cache",
            (), one(lambda: memory.evictions if memory else 0),
        ),
    ]
    if remote is not None:
        series += [
            Gauge(
                "embedserve_cache_redis_up", "1 while the Redis cache level is in use, else 0",
                (), one(lambda: 1.0 if remote.up else 0.0),
            ),
            CallbackCounter(
                "embedserve_cache_redis_errors_total",
                "Redis calls that failed or timed out (each skips the cache, never fails a request)",
                (), one(lambda: remote.errors),
            ),
            CallbackCounter(
                "embedserve_cache_redis_dropped_writes_total",
                "cache writes dropped because Redis was not keeping up (too many queued or unanswered)",
                (), one(lambda: remote.dropped_writes),
            ),
            Gauge(
                "embedserve_cache_redis_hit_rate",
                "share of the last ~64 keys asked of Redis that it had (under 1/16: misses compute "
                "while Redis answers)",
                (), one(lambda: remote.hit_rate),
            ),
            CallbackCounter(
                "embedserve_cache_redis_speculated_total",
                "requests whose queued computation was dropped because Redis answered all of it",
                (), one(lambda: remote.speculated),
            ),
            CallbackCounter(
                "embedserve_cache_redis_skipped_lookups_total",
                "lookups that computed without asking Redis (its hit rate under 1/16; in the "
                f"server one in {ASK_EVERY} still asks, the library's writes ask instead)",
                (), one(lambda: remote.skipped),
            ),
        ]
    return series
