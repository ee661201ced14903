"""The shared second cache level: Redis, through the ``redis`` client (the ``redis`` extra).

Lookups are one ``MGET`` per 512 keys; writes are pipelined batches of ``SET key value EX ttl``.
Every call is bounded by ``timeout`` (connect and socket) with no client-side retries. Redis down,
slow or answering errors is never the client's problem: the first failure logs one warning and
counts in ``errors``, then Redis is skipped (memory only) until a back-off passes (0.5 s doubling to
30 s); the next call after it tries again, and a success logs that the cache is back.

The server looks up through :meth:`get_many_async`: ``redis.asyncio``'s client, made on first use
and bound to the server's event loop, so a lookup costs no thread hop (the sync client in a reader
thread cost a miss ~0.9 ms of 7 ms on 2 cores, BENCHMARKS.md). The sync client stays for the
library and for the writer thread; both share the health state, timeout and back-off.

Writes from the server go through :meth:`put_later`: a bounded backlog of entries (beyond it a write
is dropped and counted) that one writer thread drains, everything pending in one pipeline, so a
request never waits for a cache write and concurrent requests' writes share round trips. What is
still pending when the process exits (the library, the CLI) is written first, bounded by the timeout.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import math
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from embedserve.errors import CacheError

log = logging.getLogger("embedserve.cache")

_CHUNK = 512  # keys per MGET, entries per pipelined write
_MAX_BACKOFF = 30.0
_BACKLOG = 4096  # entries pending a background write before new ones are dropped


def _safe_url(url: str) -> str:
    """The URL without a password, for log lines."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


class RedisTier:
    def __init__(self, url: str, *, ttl: float, timeout: float) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise CacheError(
                "EMBEDSERVE_REDIS_URL needs the redis client: pip install 'embedserve[redis]'"
            ) from None
        self.url = _safe_url(url)
        self._raw_url = url
        self.ttl = None if math.isinf(ttl) or ttl <= 0 else max(1, int(ttl))
        try:
            self._client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0,
            )
        except ValueError as exc:  # a malformed URL
            raise CacheError(f"invalid EMBEDSERVE_REDIS_URL {self.url!r}: {exc}") from None
        self.up = True
        self.errors = 0
        self.dropped_writes = 0
        self._backoff = 0.5
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="embedserve-cache-write")
        self._aclient: Any = None  # redis.asyncio client, bound to _aloop
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._closing: set[asyncio.Task[Any]] = set()  # old async clients being closed
        self._backlog: list[tuple[str, bytes]] = []  # waiting for the writer
        self._writing = False  # a writer job is scheduled or running
        self._timeout = timeout
        atexit.register(_flush_at_exit, weakref.ref(self))

    # -- health -------------------------------------------------------------------------------

    def usable(self) -> bool:
        return self.up or time.monotonic() >= self._retry_at

    def _failed(self, exc: BaseException) -> None:
        try:  # idle pooled connections are suspect now: the next try starts afresh
            self._client.connection_pool.disconnect(inuse_connections=False)
        except Exception:  # noqa: BLE001 - cleanup must not fail the caller
            pass
        with self._lock:
            self.errors += 1
            if self.up:
                log.warning(
                    "embedding cache: Redis at %s is unavailable (%s: %s); serving without it "
                    "and retrying in the background", self.url, type(exc).__name__, exc,
                )
                self._backoff = 0.5
            else:
                self._backoff = min(_MAX_BACKOFF, self._backoff * 2)
            self.up = False
            self._retry_at = time.monotonic() + self._backoff

    def _succeeded(self) -> None:
        if not self.up:
            with self._lock:
                if not self.up:
                    self.up = True
                    log.warning("embedding cache: Redis at %s is back", self.url)

    # -- operations ---------------------------------------------------------------------------

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for ``keys`` (None where absent); all None while Redis is unavailable."""
        if not keys or not self.usable():
            return [None] * len(keys)
        out: list[bytes | None] = []
        try:
            for i in range(0, len(keys), _CHUNK):
                out.extend(self._client.mget(keys[i : i + _CHUNK]))  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - any client failure is "no cache", never the caller's
            self._failed(exc)
            return [None] * len(keys)
        self._succeeded()
        return out

    async def get_many_async(self, keys: Sequence[str]) -> list[bytes | None]:
        """:meth:`get_many` on the running event loop, through the asyncio client."""
        if not keys or not self.usable():
            return [None] * len(keys)
        out: list[bytes | None] = []
        try:
            client = self._async_client()
            for i in range(0, len(keys), _CHUNK):
                out.extend(await client.mget(keys[i : i + _CHUNK]))
        except Exception as exc:  # noqa: BLE001 - as in get_many
            self._drop_async_client()
            self._failed(exc)
            return [None] * len(keys)
        self._succeeded()
        return out

    def _async_client(self) -> Any:
        """The asyncio client of the running loop, made on first use (or anew on another loop)."""
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aloop is not loop:
            import redis.asyncio as aredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._aclient = aredis.Redis.from_url(
                self._raw_url, socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout, retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False, health_check_interval=0,
            )
            self._aloop = loop
        return self._aclient

    def _drop_async_client(self) -> None:
        """After a failure: the next try starts with a fresh client; this one closes meanwhile."""
        client, self._aclient = self._aclient, None
        if client is None:
            return
        task = asyncio.get_running_loop().create_task(_close_quietly(client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Close the asyncio client (on its loop), then everything else as :meth:`close`."""
        client, self._aclient = self._aclient, None
        if client is not None and self._aloop is asyncio.get_running_loop():
            await _close_quietly(client)
        self.close()

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        if not items or not self.usable():
            return
        try:
            for i in range(0, len(items), _CHUNK):
                pipe = self._client.pipeline(transaction=False)
                for key, value in items[i : i + _CHUNK]:
                    pipe.set(key, value, ex=self.ttl)
                pipe.execute()
        except Exception as exc:  # noqa: BLE001 - as in get_many
            self._failed(exc)
            return
        self._succeeded()

    def put_later(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Write in the background (dropped, and counted, when the backlog is full)."""
        if not items or not self.usable():
            return
        with self._lock:
            room = _BACKLOG - len(self._backlog)
            if room < len(items):
                self.dropped_writes += len(items) - max(0, room)
                items = items[: max(0, room)]
            self._backlog.extend(items)
            if self._writing or not self._backlog:
                return
            self._writing = True
        try:
            self._writer.submit(self._write_job)
        except RuntimeError:  # closed
            with self._lock:
                self._writing = False
                self._backlog.clear()

    def _write_job(self) -> None:
        """Writer thread: write everything pending, in one pipeline per turn, until none is."""
        while True:
            with self._lock:
                items, self._backlog = self._backlog, []
                if not items:
                    self._writing = False
                    return
            try:
                self.put_many(items)
            except BaseException:
                with self._lock:
                    self._writing = False
                raise

    @property
    def pending(self) -> int:
        """Entries not yet handed to Redis by the writer (0 when idle)."""
        with self._lock:
            return len(self._backlog) + (1 if self._writing else 0)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until background writes are done: for tests and orderly shutdown."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.005)

    def flush_before_exit(self) -> None:
        """:meth:`flush`, bounded by a few Redis timeouts (at most 5 s): for close and exit."""
        self.flush(min(5.0, 4 * self._timeout + 0.5))

    def close(self) -> None:
        """Write what is pending (bounded), then stop the threads and the client."""
        self.flush_before_exit()
        self._writer.shutdown(wait=False, cancel_futures=True)
        client: Any = self._client
        try:
            client.close()
        except Exception:  # noqa: BLE001 - closing must not fail a shutdown
            pass


async def _close_quietly(client: Any) -> None:
    with contextlib.suppress(Exception):  # closing must not fail a request or a shutdown
        await client.aclose()


def _flush_at_exit(ref: weakref.ref[RedisTier]) -> None:
    tier = ref()
    if tier is not None:
        tier.flush_before_exit()
