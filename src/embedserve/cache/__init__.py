"""The embedding cache: raw vectors keyed by what decides them, in memory and (optionally) Redis.

* :func:`open_cache` builds one from :class:`~embedserve.config.Settings` (``EMBEDSERVE_CACHE_MB``,
  ``EMBEDSERVE_REDIS_URL``, ``EMBEDSERVE_CACHE_TTL``, ``EMBEDSERVE_REDIS_TIMEOUT``): the server
  makes its own in its lifespan; the library and CLI share :func:`shared_cache`, one per process.
* :meth:`EmbeddingCache.lookup` walks one call's texts through the levels; ``serve.embed_cached``
  puts it in front of a batcher (the server), ``Embedder.encode`` in front of the engine (library).

Keys and values are described in :mod:`embedserve.cache.keys`.
"""

from __future__ import annotations

import threading

from embedserve.cache.tiered import EmbeddingCache, Keyspace, Lookup
from embedserve.config import Settings

__all__ = ["EmbeddingCache", "Keyspace", "Lookup", "open_cache", "shared_cache"]

_shared: dict[tuple[object, ...], EmbeddingCache | None] = {}
_shared_lock = threading.Lock()


def open_cache(settings: Settings) -> EmbeddingCache | None:
    """A new cache per ``settings``; None when both levels are off. Raises ``CacheError`` for a
    Redis URL without the redis client or a malformed URL."""
    remote = None
    if settings.redis_url:
        from embedserve.cache.remote import RedisTier

        remote = RedisTier(
            settings.redis_url, ttl=settings.cache_ttl, timeout=settings.redis_timeout
        )
    cache = EmbeddingCache(settings.cache_mb * 1024 * 1024, remote)
    return cache if cache.enabled else None


def shared_cache(settings: Settings) -> EmbeddingCache | None:
    """The process's cache for these settings (the library's default), made on first use."""
    key = (settings.cache_mb, settings.redis_url, settings.cache_ttl, settings.redis_timeout)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = open_cache(settings)
        return _shared[key]
