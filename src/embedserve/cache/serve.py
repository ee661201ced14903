"""The cache in front of a batcher: hits are answered at once, only misses are queued.

Used by the server's embed routes and by collections in the server, so both share one cache. The
batcher and the engine never know about it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np

from embedserve.cache.tiered import EmbeddingCache
from embedserve.engine.base import EngineInfo
from embedserve.errors import InputTooLong, Overloaded

Wait = Callable[["asyncio.Future[Any]"], Awaitable[None]]


async def embed_cached(
    cache: EmbeddingCache | None,
    batcher: Any,
    info: EngineInfo,
    texts: Sequence[str],
    *,
    truncate: bool = True,
    limit: int = 0,
    wait: Wait | None = None,
    on_compute: Callable[[float], None] | None = None,
) -> tuple[np.ndarray, int]:
    """Raw float32 vectors for ``texts`` (input order) and their total token count.

    ``wait(future)`` (optional) is awaited before the batcher's future, e.g. to cancel it when the
    client hangs up. Without a cache (or for an engine without a weights digest) this is exactly
    ``batcher.submit``. ``on_compute`` (the usage meter) hears the misses' engine time; hits cost
    none.
    """
    lookup = cache.lookup(info, texts, window=limit, truncate=truncate) if cache else None
    if lookup is None:
        pending = batcher.submit(texts, truncate, limit, on_compute=on_compute)
        if wait is not None:
            await wait(pending)
        vectors, tokens = await pending
        return vectors, tokens
    pending = None
    plan = lookup.remote_plan()
    if plan == "during":  # compute while Redis answers (it rarely has what is asked lately)
        assert cache is not None and cache.remote is not None
        keys = lookup.remote_keys()
        with contextlib.suppress(Overloaded):  # then Redis may still answer it all, see below
            pending = batcher.submit(
                lookup.miss_texts(), truncate, limit, counts=True, on_compute=on_compute
            )
        lookup.take_remote(await cache.remote.get_many_async(keys))
        if lookup.hit_all and pending is not None:
            pending.cancel()  # still queued: never computed; already running: its result dropped
            cache.remote.speculated += 1
    elif plan == "first":
        assert cache is not None and cache.remote is not None
        lookup.take_remote(await cache.remote.get_many_async(lookup.remote_keys()))
    if lookup.hit_all:
        return lookup.complete()
    if pending is None:
        pending = batcher.submit(
            lookup.miss_texts(), truncate, limit, counts=True, on_compute=on_compute
        )
    if wait is not None:
        await wait(pending)
    try:
        vectors, _tokens, counts = await pending
    except InputTooLong as exc:  # the index in the caller's list, not in the misses
        raise InputTooLong(lookup.miss_index(exc.index), exc.tokens, exc.limit) from None
    return lookup.complete(vectors, counts, background=True)
