"""One asyncio connection to Redis, for the server's cache lookups on its event loop.

Why not ``redis.asyncio``: its command path (a pool checkout, ``wait_for`` tasks around the write and
the read, four loop turns per command) cost a single-key ``MGET`` ~130-290 us on loopback where the
round trip is ~30 us, and a cache miss pays that before it computes (BENCHMARKS.md). Here a command
is one ``transport.write`` and one future, resolved straight from ``data_received`` by ``hiredis``'s
reply parser; concurrent lookups are pipelined on the one connection, replies matched in order.
Writes (``writes`` of :meth:`AsyncRedis.call`, sent in the same packet as the lookup, or
:meth:`AsyncRedis.send_unanswered`) take a place in that order but nobody waits for their replies;
an error reply to one goes to ``on_write_error``.

The URL is read by ``redis``'s own parser (``redis://``, ``rediss://``, ``unix://``, user, password,
db); the handshake is ``AUTH`` and ``SELECT`` where the URL asks for them. Any failure, a timeout
included, closes the connection and fails every command on it (their replies could no longer be
matched); the caller opens a new one.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any


class RedisReplyError(Exception):
    """An error reply (``-ERR ...``) from Redis."""


def connect_args(url: str) -> dict[str, Any]:
    """What :meth:`AsyncRedis.open` needs from a Redis URL (``redis``'s parser reads it)."""
    from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url

    kw = parse_url(url)
    cls = kw.get("connection_class")
    return {
        "path": kw.get("path") if cls is UnixDomainSocketConnection else None,
        "host": kw.get("host") or "localhost",
        "port": int(kw.get("port") or 6379),
        "db": int(kw.get("db") or 0),
        "username": kw.get("username"),
        "password": kw.get("password"),
        "tls": _tls_context(kw) if cls is SSLConnection else None,
    }


def _tls_context(kw: dict[str, Any]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=kw.get("ssl_ca_certs"))
    if kw.get("ssl_certfile"):
        ctx.load_cert_chain(kw["ssl_certfile"], kw.get("ssl_keyfile"))
    reqs = str(kw.get("ssl_cert_reqs") or "required").lower()
    if reqs in ("none", "cert_none"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif reqs in ("optional", "cert_optional"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_OPTIONAL
    if str(kw.get("ssl_check_hostname", "")).lower() in ("false", "0", "no"):
        ctx.check_hostname = False
    return ctx


def pack(*args: str | bytes | int) -> bytes:
    """One command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class AsyncRedis(asyncio.Protocol):
    """A pipelined connection: :meth:`call` writes a command and awaits its reply."""

    def __init__(self, on_write_error: Callable[[BaseException], None] | None = None) -> None:
        import hiredis

        self._reader = hiredis.Reader(replyError=RedisReplyError)
        self._on_write_error = on_write_error
        self._waiting: deque[asyncio.Future[Any] | None] = deque()  # None: a write's reply
        self.unanswered = 0  # writes sent whose replies have not arrived
        self._transport: asyncio.Transport | None = None
        self._lost: BaseException | None = None

    @classmethod
    async def open(
        cls, args: dict[str, Any], timeout: float,
        on_write_error: Callable[[BaseException], None] | None = None,
    ) -> AsyncRedis:
        """Connect, authenticate and select the db, all within ``timeout`` seconds."""
        return await asyncio.wait_for(cls._open(args, lambda: cls(on_write_error)), timeout)

    @staticmethod
    async def _open(args: dict[str, Any], factory: Callable[[], AsyncRedis]) -> AsyncRedis:
        loop = asyncio.get_running_loop()
        if args["path"] is not None:
            _, conn = await loop.create_unix_connection(factory, args["path"])
        else:
            _, conn = await loop.create_connection(
                factory, args["host"], args["port"], ssl=args["tls"]
            )
        hello: list[bytes] = []
        if args["password"] is not None:
            user = () if args["username"] is None else (args["username"],)
            hello.append(pack("AUTH", *user, args["password"]))
        if args["db"]:
            hello.append(pack("SELECT", args["db"]))
        try:
            for reply in await asyncio.gather(*(conn._send(c) for c in hello)):
                if isinstance(reply, RedisReplyError):
                    raise reply
        except BaseException:  # a cancelled open (its timeout) too
            conn.close()
            raise
        return conn

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        while True:
            try:
                reply = reader.gets()
            except Exception as exc:  # noqa: BLE001 - a protocol error: nothing can be matched now
                self._fail(exc)
                return
            if reply is False:
                return
            if not self._waiting:  # a reply nobody asked for: the stream is out of step
                self._fail(ConnectionError("unexpected reply from Redis"))
                return
            future = self._waiting.popleft()
            if future is None:  # a write's
                self.unanswered -= 1
                if isinstance(reply, RedisReplyError) and self._on_write_error is not None:
                    self._on_write_error(reply)
            elif not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._fail(exc or ConnectionError("Redis closed the connection"))

    # -- commands -----------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self._lost is None and self._transport is not None

    def _send(self, packed: bytes) -> asyncio.Future[Any]:
        if self._lost is not None or self._transport is None:
            raise ConnectionError(f"Redis connection is closed ({self._lost})")
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._transport.write(packed)
        return future

    def send_unanswered(self, packed: bytes, replies: int, cap: int) -> bool:
        """Send ``packed`` (``replies`` commands) and wait for nothing; False (nothing sent) when
        the connection is closed or ``cap`` writes are already unanswered (Redis stalled)."""
        if not self.usable or self.unanswered + replies > cap:
            return False
        assert self._transport is not None
        self._waiting.extend([None] * replies)
        self.unanswered += replies
        self._transport.write(packed)
        return True

    async def call(
        self, packed: bytes | list[bytes], timeout: float, writes: bytes = b"", count: int = 0
    ) -> Any:
        """The reply to one packed command; an error reply raises :class:`RedisReplyError`.
        A timeout closes the connection (the late reply could not be matched any more).

        ``writes`` (``count`` commands) go out first in the same write, unanswered."""
        if not self.usable:
            raise ConnectionError(f"Redis connection is closed ({self._lost})")
        if count:
            self._waiting.extend([None] * count)
            self.unanswered += count
        future = self._send(writes + (packed if isinstance(packed, bytes) else b"".join(packed)))
        timer = asyncio.get_running_loop().call_later(timeout, self._timed_out, future, timeout)
        try:
            reply = await future
        finally:
            timer.cancel()
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    def _timed_out(self, future: asyncio.Future[Any], timeout: float) -> None:
        if not future.done():
            self._fail(TimeoutError(f"no reply from Redis within {timeout} s"))

    def _fail(self, exc: BaseException) -> None:
        if self._lost is None:
            self._lost = exc
        self.unanswered = 0  # those writes are lost with the connection
        while self._waiting:
            future = self._waiting.popleft()
            if future is not None and not future.done():
                future.set_exception(ConnectionError(f"Redis connection lost: {exc}"))
        self.close()

    def close(self) -> None:
        if self._lost is None:
            self._lost = ConnectionError("closed")
        if self._transport is not None:
            self._transport.close()
