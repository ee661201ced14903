"""The shared second cache level: Redis (the ``redis`` extra: the ``redis`` client and ``hiredis``).

Lookups are one ``MGET`` per 512 keys; writes are pipelined batches of ``SET key value EX ttl``.
Every call is bounded by ``timeout`` (connect and socket) with no client-side retries. Redis down,
slow or answering errors is never the client's problem: the first failure logs one warning and
counts in ``errors``, then Redis is skipped (memory only) until a back-off passes (0.5 s doubling to
30 s); the next call after it tries again, and a success logs that the cache is back.

A miss asks Redis before it computes, so a lookup's own cost is on every miss. ``redis``'s command
path (pool checkout, retry wrapper, observability hooks; in ``redis.asyncio`` also ``wait_for``
tasks and four loop turns) cost a single-key ``MGET`` 130-290 us on loopback where the round trip
is ~30 us (BENCHMARKS.md), so neither path uses it:

* the library (and the flusher thread) send packed commands on ``redis`` connections this tier keeps
  in its own free list (``redis`` makes them from the URL: TLS, unix sockets, AUTH, SELECT), one
  caller per connection, and read the replies with their ``hiredis`` parser;
* the server looks up through :meth:`get_many_async`: one pipelined asyncio connection on its event
  loop (:mod:`embedserve.cache.redis_async`), no thread hop and one loop turn per lookup.

Both share the health state, timeout and back-off. A failure retires every connection that was idle
then (they may be dead): the sync ones by a generation count, the asyncio one by closing itself.

Writes (:meth:`put_later`) are never waited for. They are queued and ride along with the next
lookup's command, in the same packet (one round trip and one wake-up of Redis for both: on this
2-core box each wake-up of another process right after an engine run cost 0.1-0.4 ms,
BENCHMARKS.md); their replies are read after it (asyncio: as they arrive), so an error reply to a
write still counts as a failure. Writes no lookup takes within ``_FLUSH_EVERY`` are sent by a
flusher thread. No writer thread competes with the engine for the CPU and the GIL. Beyond
``_MAX_QUEUED`` waiting entries (or ``_MAX_UNANSWERED`` on the event loop's connection: Redis
stalled) a write is dropped and counted. What is queued or unanswered when the process exits or the
tier closes is sent and waited for, bounded by a few timeouts, so a process that exits right after
``encode`` still leaves its vectors.

While Redis has had under 1/16 of the keys asked of it lately, small lookups stop waiting for it
(:meth:`RedisTier.plan`). In the server one in ``ASK_EVERY`` asks while computing, the others
compute without asking; the asked ones keep the hit rate current. In the library (one thread, no
event loop to overlap a round trip with) none asks: their writes are sent by the flusher thread
after an ``MGET`` of the same keys, whose answer keeps the rate current (``put_later(probe=True)``);
they are queued without a lock and as computed, their keys hashed and values packed by the flusher.
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
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from embedserve.cache.redis_async import AsyncRedis, connect_args, pack
from embedserve.errors import CacheError

Stored = Callable[[Any], tuple[str, bytes]]  # a queued write -> its Redis key and value (put_later)

log = logging.getLogger("embedserve.cache")

_CHUNK = 512  # keys per MGET, entries per pipelined write
_MAX_BACKOFF = 30.0
_MAX_QUEUED = 4096  # writes waiting to ride along with the next lookup, before dropping
_MAX_UNANSWERED = 4096  # writes sent on the event loop's connection and not yet answered
_MAX_OWED = 4096  # unread write replies on a sync connection before they are read at once
_FLUSH_EVERY = 0.1  # seconds: writes no lookup took within this are sent by the flusher thread
_SPECULATE_BELOW = 1 / 16  # Redis's recent hit rate under which misses compute while it answers
_RATE_WEIGHT = 1 / 64  # the weight of each looked-up key in that moving hit rate
ASK_EVERY = 8  # while speculating, one lookup in this many asks Redis (the others skip it)


def _safe_url(url: str) -> str:
    """The URL without a password, for log lines."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


class _Conn:
    """A sync connection of ours: the ``redis`` connection, the failure generation it was made
    in, and how many replies to writes sent on it are still unread."""

    __slots__ = ("conn", "generation", "owed")

    def __init__(self, conn: Any, generation: int) -> None:
        self.conn = conn
        self.generation = generation
        self.owed = 0

    def settle(self) -> None:
        """Read the replies owed to earlier writes; an error reply among them raises."""
        owed, self.owed = self.owed, 0
        for _ in range(owed):
            self.conn.read_response()


class RedisTier:
    def __init__(self, url: str, *, ttl: float, timeout: float) -> None:
        try:
            import hiredis  # noqa: F401 - the reply parser of both paths
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise CacheError(
                "EMBEDSERVE_REDIS_URL needs the redis client and hiredis: pip install 'embedserve[redis]'"
            ) from None
        self.url = _safe_url(url)
        self.ttl = None if math.isinf(ttl) or ttl <= 0 else max(1, int(ttl))
        try:  # the pool only makes connections (from the URL); checkout and release are ours
            self._pool = redis.ConnectionPool.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0,
            )
            probe = self._pool.make_connection()
            self._connect_args = connect_args(url)
        except ValueError as exc:  # a malformed URL
            raise CacheError(f"invalid EMBEDSERVE_REDIS_URL {self.url!r}: {exc}") from None
        # Idle sync connections. A failure bumps the generation; an older connection is closed
        # when next taken instead of reused (it may be dead).
        self._generation = 0
        self._idle: list[_Conn] = [_Conn(probe, 0)]
        self._aconn: AsyncRedis | None = None  # the server's, on the loop _aloop
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._aopen = asyncio.Lock()
        self.up = True
        self.errors = 0
        self.dropped_writes = 0
        # Redis's hit rate over roughly the last 64 keys asked (moving average), from 1.0: until
        # the misses are seen, a miss asks Redis first and computes after (see plan())
        self.hit_rate = 1.0
        self.speculated = 0  # server lookups whose queued computation Redis made needless (dropped)
        self.skipped = 0  # lookups that did not ask Redis (speculating, not sampled)
        self._asks = 0
        self._backoff = 0.5
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self._timeout = timeout
        # writes waiting to be sent: (queued at, items, what makes each a key and value);
        # under _lock
        self._queue: list[tuple[float, Sequence[Any], Stored | None]] = []
        self._queued = 0
        # batches of writes of lookups that did not ask Redis (put_later(probe=True)): the flusher
        # thread asks Redis for their keys before writing them. Lock-free: appended and popped
        # (atomic deque operations) without _lock, which costs a one-text miss ~10 us when cold
        self._probes: deque[tuple[Sequence[Any], Stored | None]] = deque()
        self._flusher: threading.Thread | None = None
        self._sending = threading.Lock()
        self._closed = False
        atexit.register(_flush_at_exit, weakref.ref(self))

    # -- health -------------------------------------------------------------------------------

    def usable(self) -> bool:
        return self.up or time.monotonic() >= self._retry_at

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self._generation += 1  # idle connections are suspect now: the next try starts afresh
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

    # -- sync connections (the library, worker threads) ---------------------------------------

    def _take(self) -> _Conn:
        """An idle connection of the current generation, or a new one. ``list.pop``/``append``
        are atomic: two threads never hold the same connection."""
        generation = self._generation
        while self._idle:
            held = self._idle.pop()
            if held.generation == generation:
                return held
            held.conn.disconnect()
        return _Conn(self._pool.make_connection(), generation)

    def _sync_call(self, packed: list[bytes], replies: int, unread: int = 0) -> list[Any]:
        """Send ``packed`` (after any queued writes) and read the replies to its first ``replies``
        commands (after any owed to earlier writes); the ``unread`` commands after those are
        writes whose replies are left owed.

        A connection that failed in any way (an error reply included: replies after it would be
        left unread) is closed, never reused."""
        writes, count = self._take_queue()
        held = self._take()
        try:
            held.conn.send_packed_command([*writes, *packed], check_health=False)
            held.owed += count
            held.settle()
            out = [held.conn.read_response() for _ in range(replies)]
            held.owed += unread
        except BaseException:
            held.conn.disconnect()
            raise
        self._idle.append(held)
        return out

    def _sync_send(self, packed: Any, replies: int) -> None:
        """Send ``packed`` without waiting for its ``replies`` (the connection owes them)."""
        held = self._take()
        try:
            held.conn.send_packed_command(packed, check_health=False)
            held.owed += replies
            if held.owed > _MAX_OWED:
                held.settle()
        except BaseException:
            held.conn.disconnect()
            raise
        self._idle.append(held)

    # -- operations ---------------------------------------------------------------------------

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for ``keys`` (None where absent; all None while Redis is unavailable or when it
        fails: counted, never raised). Queued writes ride along."""
        if not keys or not self.usable():
            return [None] * len(keys)
        chunks = [pack("MGET", *keys[i : i + _CHUNK]) for i in range(0, len(keys), _CHUNK)]
        try:
            replies = self._sync_call(chunks, len(chunks))
        except Exception as exc:  # noqa: BLE001 - any client failure is "no cache", never the caller's
            self._failed(exc)
            return [None] * len(keys)
        self._succeeded()
        out: list[bytes | None] = [value for reply in replies for value in reply]
        self._observe(out)
        return out

    def plan(self, *, probes: bool = False) -> str:
        """How a lookup of a few misses uses Redis now: ``"none"`` (it is down: see
        :meth:`usable`), ``"first"`` (ask, then compute what it lacks), or, while Redis has had
        under 1/16 of the keys asked lately, ``"during"`` (ask and compute at once; what Redis
        answers is still used, and the server drops a queued computation Redis answers in full)
        for one lookup in ``ASK_EVERY``, ``"skip"`` (compute, do not ask) for the others.
        ``probes``: the caller's skipped lookups write with ``put_later(probe=True)`` instead
        (the library: it has no event loop to hide a round trip behind, and a request to Redis
        during its computation takes a core from it), so they are all ``"skip"`` and the rate is
        kept current off the call.

        Why: on a 2-core box a round trip right after an engine run cost 0.2-0.4 ms, mostly
        waking Redis up (BENCHMARKS.md), and asking during the run puts Redis's CPU on the
        engine's cores; when Redis has almost nothing, asking every time buys almost nothing. The
        sampled lookups keep the rate current: a few hits among them and every lookup asks first
        again. Writes still go to Redis (with the sampled lookups, or the flusher thread), so
        other servers share."""
        if not self.up and time.monotonic() < self._retry_at:  # (usable(), without the call)
            return "none"
        if self.hit_rate >= _SPECULATE_BELOW:
            return "first"
        if not probes:
            self._asks += 1
            if self._asks % ASK_EVERY == 0:
                return "during"
        self.skipped += 1
        return "skip"

    def _observe(self, values: Sequence[bytes | None]) -> None:
        rate = self.hit_rate
        for value in values:
            rate += _RATE_WEIGHT * ((value is not None) - rate)
        self.hit_rate = rate

    async def get_many_async(self, keys: Sequence[str]) -> list[bytes | None]:
        """:meth:`get_many` on the running event loop, through one pipelined asyncio connection."""
        if not keys or not self.usable():
            return [None] * len(keys)
        out: list[bytes | None] = []
        try:
            conn = await self._async_connection()
            writes, count = self._take_queue()
            if count and conn.unanswered + count > _MAX_UNANSWERED:  # Redis is not keeping up
                self.dropped_writes += count
                writes, count = [], 0
            for i in range(0, len(keys), _CHUNK):
                packed = pack("MGET", *keys[i : i + _CHUNK])
                out.extend(await conn.call(packed, self._timeout, b"".join(writes), count))
                writes, count = [], 0
        except Exception as exc:  # noqa: BLE001 - as in get_many
            self._failed(exc)
            return [None] * len(keys)
        self._succeeded()
        self._observe(out)
        return out

    async def _async_connection(self) -> AsyncRedis:
        """The running loop's connection, opened on first use and after a failure (and anew on
        another loop: an asyncio connection belongs to the loop that opened it)."""
        loop = asyncio.get_running_loop()
        if self._aloop is not loop:
            self._aloop, self._aconn, self._aopen = loop, None, asyncio.Lock()
        conn = self._aconn
        if conn is not None and conn.usable:
            return conn
        async with self._aopen:  # one opening at a time; the others then share it
            conn = self._aconn
            if conn is None or not conn.usable:
                conn = self._aconn = await AsyncRedis.open(
                    self._connect_args, self._timeout, on_write_error=self._failed
                )
            return conn

    def _pack_writes(self, items: Sequence[Any], item: Stored | None = None) -> bytes:
        expiry = () if self.ttl is None else ("EX", self.ttl)
        if item is not None:
            items = [item(x) for x in items]
        return b"".join([pack("SET", key, value, *expiry) for key, value in items])

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Write ``items`` and wait for Redis to answer."""
        if not items or not self.usable():
            return
        try:
            for i in range(0, len(items), _CHUNK):
                chunk = items[i : i + _CHUNK]
                self._sync_call([self._pack_writes(chunk)], len(chunk))  # an error reply raises
        except Exception as exc:  # noqa: BLE001 - as in get_many
            self._failed(exc)
            return
        self._succeeded()

    def put_later(
        self,
        items: Sequence[Any],
        *,
        item: Stored | None = None,
        probe: bool = False,
    ) -> None:
        """Write ``items`` without waiting: they ride along with the next lookup's command (one
        round trip, one wake-up of Redis, for both), or are sent by a flusher thread if no lookup
        comes within ``_FLUSH_EVERY``. Beyond ``_MAX_QUEUED`` waiting entries (probed: batches)
        a write is dropped and counted. ``item``: each of ``items`` is written as ``item(it)`` (a
        Redis key and a value), made (like the command) when the write is sent, so the caller
        pays only for queueing it; without it, ``items`` are (key, value) pairs.

        ``probe``: the items were computed without asking Redis (:meth:`plan`). The flusher
        thread sends them within ``_FLUSH_EVERY``, each batch after an ``MGET`` of its keys in
        the same packet; what that finds (Redis had some of them: another process wrote them)
        counts in the hit rate as lookups do, so a low rate is noticed rising without any call
        asking Redis."""
        if not items or not self.usable():
            return
        if probe:  # (a batch holds at most SPECULATE_MAX writes)
            if len(self._probes) < _MAX_QUEUED:
                self._probes.append((items, item))
            else:
                self._dropped(len(items))
        else:
            with self._lock:
                if self._queued + len(items) > _MAX_QUEUED:
                    self.dropped_writes += len(items)
                    return
                self._queue.append((time.monotonic(), items, item))
                self._queued += len(items)
        if self._flusher is None:
            self._start_flusher()

    def _dropped(self, count: int) -> None:
        with self._lock:
            self.dropped_writes += count

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher is None and not self._closed:
                self._flusher = threading.Thread(
                    target=_flush_queue_every, args=(weakref.ref(self),), daemon=True,
                    name="embedserve-cache-flush",
                )
                self._flusher.start()

    def _take_queue(self, older_than: float | None = None) -> tuple[list[bytes], int]:
        """The queued writes (packed) and their count; all, or none unless the oldest was queued
        before ``older_than``."""
        with self._lock:
            queue = self._queue
            if not queue or (older_than is not None and queue[0][0] > older_than):
                return [], 0
            count, self._queue, self._queued = self._queued, [], 0
        return [self._pack_writes(items, item) for _, items, item in queue], count

    def _send_queue(self, older_than: float | None = None) -> None:
        """Send what is queued (see :meth:`_take_queue`) on a sync connection, not waiting."""
        with self._sending:  # so flush() waits for the flusher thread's send in progress
            writes, count = self._take_queue(older_than)
            if not count:
                return
            try:
                self._sync_send(writes, count)
            except Exception as exc:  # noqa: BLE001 - as in get_many
                self._failed(exc)

    def _send_probes(self) -> None:
        """Send the probed writes (:meth:`put_later`): an ``MGET`` of their keys, then the writes,
        in one packet; the ``MGET``'s answer updates the hit rate."""
        with self._sending:
            probes = []
            with contextlib.suppress(IndexError):  # (put_later may append meanwhile)
                while True:
                    probes.append(self._probes.popleft())
            if not probes:
                return
            writes = [item(x) if item else x for items, item in probes for x in items]
            keys = [key for key, _ in writes]
            mgets = [pack("MGET", *keys[i : i + _CHUNK]) for i in range(0, len(keys), _CHUNK)]
            try:
                found = self._sync_call(
                    [*mgets, self._pack_writes(writes)], len(mgets), len(keys)
                )
            except Exception as exc:  # noqa: BLE001 - as in get_many
                self._failed(exc)
                return
            self._succeeded()
            self._observe([value for reply in found for value in reply])

    @property
    def pending(self) -> int:
        """Writes not yet answered by Redis: queued, sent and unanswered (0 once all landed)."""
        conn = self._aconn
        owed = sum(held.owed for held in list(self._idle))
        probing = sum(len(items) for items, _ in list(self._probes))
        return self._queued + probing + owed + (conn.unanswered if conn else 0)

    def flush(self, timeout: float = 5.0) -> None:
        """Send what is queued and wait (bounded) until Redis has answered every write: for tests
        and shutdown. The sync connections' replies are read here; the event loop reads its own."""
        deadline = time.monotonic() + timeout
        self._send_queue()
        self._send_probes()
        taken = self._drain_idle()  # held here: no other thread reads their replies meanwhile
        try:
            for held in taken:
                if held.owed and time.monotonic() < deadline:
                    held.settle()
        except Exception as exc:  # noqa: BLE001 - a shutdown never fails on the cache
            self._failed(exc)
        finally:
            self._idle.extend(taken)
        conn = self._aconn
        while conn is not None and conn.unanswered and conn.usable and time.monotonic() < deadline:
            time.sleep(0.005)

    def _drain_idle(self) -> list[_Conn]:
        taken: list[_Conn] = []
        while self._idle:
            taken.append(self._idle.pop())
        return taken

    def flush_before_exit(self) -> None:
        """:meth:`flush`, bounded by a few Redis timeouts (at most 5 s): for close and exit."""
        self.flush(min(5.0, 4 * self._timeout + 0.5))

    async def aclose(self) -> None:
        """Let the asyncio connection's writes be answered (bounded), close it on its loop, then
        everything else as :meth:`close`."""
        conn, self._aconn = self._aconn, None
        if conn is not None and self._aloop is asyncio.get_running_loop():
            writes, count = self._take_queue()
            if count:
                conn.send_unanswered(b"".join(writes), count, _MAX_UNANSWERED)
            deadline = time.monotonic() + min(5.0, 4 * self._timeout + 0.5)
            while conn.unanswered and conn.usable and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            conn.close()
        self.close()

    def close(self) -> None:
        """Send queued writes and wait for the answers (bounded), then close the connections."""
        self._closed = True
        self.flush_before_exit()
        for held in self._drain_idle():
            with contextlib.suppress(Exception):  # closing must not fail a shutdown
                held.conn.disconnect()


def _flush_at_exit(ref: weakref.ref[RedisTier]) -> None:
    tier = ref()
    if tier is not None:
        tier.flush_before_exit()


def _flush_queue_every(ref: weakref.ref[RedisTier]) -> None:
    """The flusher thread: writes that no lookup took along within ``_FLUSH_EVERY`` go out, and
    every ``_FLUSH_EVERY`` the probed writes (:meth:`RedisTier.put_later`)."""
    while True:
        time.sleep(_FLUSH_EVERY)
        tier = ref()
        if tier is None or tier._closed:
            return
        tier._send_queue(older_than=time.monotonic() - _FLUSH_EVERY)
        tier._send_probes()
        del tier
