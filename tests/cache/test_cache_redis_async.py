"""The server's lookup path: ``RedisTier.get_many_async``, one pipelined asyncio connection on the event loop."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import rediskit
import servicekit
from rediskit import RedisServer

from embedserve.cache.remote import RedisTier

pytestmark = pytest.mark.redis


def _sync_client_broken(tier: RedisTier) -> None:
    """Make the sync connections unusable, so only the asyncio path can answer."""

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("the server's lookup must not use the sync connections")

    tier._sync_call = refuse  # type: ignore[method-assign]


def test_async_lookup_answers_from_redis_on_the_loop_without_the_sync_client(
    redis_server: RedisServer,
) -> None:
    import redis

    redis.Redis.from_url(redis_server.url).mset({"k:a": b"one", "k:b": b"two"})
    tier = RedisTier(redis_server.url, ttl=60, timeout=1.0)
    _sync_client_broken(tier)
    threads: list[str] = []

    async def run() -> list[list[bytes | None]]:
        threads.append(threading.current_thread().name)
        first = await tier.get_many_async(["k:a", "k:missing", "k:b"])
        many = await asyncio.gather(*(tier.get_many_async(["k:b", "k:a"]) for _ in range(8)))
        await tier.aclose()
        return [first, *many]

    try:
        results = asyncio.run(run())
    finally:
        tier.close()
    assert results[0] == [b"one", None, b"two"]
    assert all(r == [b"two", b"one"] for r in results[1:])
    assert tier.errors == 0 and tier.up
    assert threads == ["MainThread"]


def test_async_lookup_survives_a_stall_and_an_outage_with_one_warning(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    caplog.set_level(logging.WARNING, logger="embedserve.cache")
    redis.Redis.from_url(redis_server.url).set("k:a", b"one")
    tier = RedisTier(redis_server.url, ttl=60, timeout=0.2)
    _sync_client_broken(tier)
    port = redis_server.port

    async def run() -> dict[str, object]:
        seen: dict[str, object] = {"before": await tier.get_many_async(["k:a"])}
        blocker = threading.Thread(
            target=lambda: redis.Redis.from_url(redis_server.url).execute_command("DEBUG", "SLEEP", 2)
        )
        blocker.start()
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        seen["stalled"] = await tier.get_many_async(["k:a"])  # bounded by the 0.2 s timeout
        seen["stall_s"] = time.monotonic() - t0
        seen["skipped"] = [await tier.get_many_async(["k:a"]) for _ in range(20)]  # backing off
        await asyncio.to_thread(blocker.join)
        redis_server.kill()
        await asyncio.sleep(0.6)  # past the first back-off: the next call tries the dead server
        seen["down"] = [await tier.get_many_async(["k:a"]) for _ in range(5)]
        revived = RedisServer(port=port).start()
        try:
            await asyncio.to_thread(redis.Redis.from_url(revived.url).set, "k:a", b"again")
            deadline = time.monotonic() + 10
            while True:
                got = await tier.get_many_async(["k:a"])
                if got == [b"again"] or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            seen["back"] = got
        finally:
            revived.close()
        await tier.aclose()
        return seen

    try:
        seen = asyncio.run(run())
    finally:
        tier.close()
    assert seen["before"] == [b"one"]
    assert seen["stalled"] == [None] and seen["stall_s"] < 1.5  # not Redis's 2 s stall
    assert seen["skipped"] == [[None]] * 20
    assert seen["down"] == [[None]] * 5
    assert seen["back"] == [b"again"]
    assert tier.errors >= 2
    down = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(down) == 1  # one for the whole outage (stall, then kill), never one per call
    assert any("is back" in r.getMessage() for r in caplog.records)


def test_concurrent_lookups_share_one_pipelined_connection_and_each_get_their_own_reply(
    redis_server: RedisServer,
) -> None:
    import redis

    admin = redis.Redis.from_url(redis_server.url)
    admin.mset({f"k:{i}": f"v{i}" for i in range(200)})
    tier = RedisTier(redis_server.url, ttl=60, timeout=2.0)
    _sync_client_broken(tier)

    async def one(i: int) -> tuple[int, list[bytes | None]]:
        await asyncio.sleep(0)
        keys = [f"k:{(i + j) % 200}" for j in range(i % 5 + 1)] + ["k:absent"]
        return i, await tier.get_many_async(keys)

    async def run() -> tuple[list[tuple[int, list[bytes | None]]], int]:
        results = await asyncio.gather(*(one(i) for i in range(300)))
        clients = len(admin.client_list())  # the admin's own + the tier's
        await tier.aclose()
        return results, clients

    try:
        results, clients = asyncio.run(run())
    finally:
        tier.close()
    for i, got in results:
        assert got == [f"v{(i + j) % 200}".encode() for j in range(i % 5 + 1)] + [None], i
    assert clients == 2  # 300 lookups at once, one connection
    assert tier.errors == 0


@pytest.mark.parametrize("scheme", ["tcp", "unix", "tls"])
def test_the_url_s_user_password_db_socket_and_tls_are_honoured_by_both_paths(
    scheme: str, tmp_path: Path
) -> None:
    import redis

    servicekit.require(rediskit.available(), rediskit.WHAT)
    servicekit.require(shutil.which("openssl") is not None, "openssl (apt-get install openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    sock, tls_port = tmp_path / "redis.sock", rediskit._free_port()
    server = RedisServer(args=(
        "--unixsocket", str(sock), "--unixsocketperm", "700", "--tls-port", str(tls_port),
        "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
        "--tls-auth-clients", "no",
    )).start()
    try:
        admin = redis.Redis.from_url(server.url)
        admin.execute_command("ACL", "SETUSER", "app", "on", ">s3cret", "~*", "+@all")
        admin.execute_command("ACL", "SETUSER", "default", "off")  # only the URL's user gets in
        app = redis.Redis(host="127.0.0.1", port=server.port, username="app", password="s3cret", db=3)
        app.set("k:here", b"in db 3")
        url = {
            "tcp": f"redis://app:s3cret@127.0.0.1:{server.port}/3",
            "unix": f"unix://app:s3cret@{sock}?db=3",
            "tls": f"rediss://app:s3cret@127.0.0.1:{tls_port}/3?ssl_ca_certs={cert}",
        }[scheme]
        tier = RedisTier(url, ttl=60, timeout=2.0)
        wrong = RedisTier(url.replace("s3cret", "wrong"), ttl=60, timeout=2.0)

        async def run() -> tuple[list[bytes | None], list[bytes | None]]:
            got = await tier.get_many_async(["k:here", "k:absent"])
            denied = await wrong.get_many_async(["k:here"])
            await tier.aclose()
            await wrong.aclose()
            return got, denied

        try:
            assert tier.get_many(["k:here", "k:absent"]) == [b"in db 3", None]
            tier.put_many([("k:new", b"written")])
            got, denied = asyncio.run(run())
            assert got == [b"in db 3", None]
            assert app.get("k:new") == b"written"
            assert denied == [None] and wrong.errors == 1  # refused: no cache, no exception
            assert tier.errors == 0
        finally:
            tier.close()
            wrong.close()
    finally:
        server.close()


def test_an_error_reply_to_a_write_sent_on_the_loop_counts_as_a_failure(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    caplog.set_level(logging.WARNING, logger="embedserve.cache")
    admin = redis.Redis.from_url(redis_server.url)
    tier = RedisTier(redis_server.url, ttl=60, timeout=2.0)

    async def run() -> tuple[int, list[bytes | None]]:
        await tier.get_many_async(["warm"])
        admin.config_set("maxmemory", "1")
        admin.config_set("maxmemory-policy", "noeviction")  # every SET: -OOM
        tier.put_later([("k:a", b"1"), ("k:b", b"2")])
        await tier.get_many_async(["warm"])  # the writes ride along; their replies are errors
        deadline = time.monotonic() + 10
        while not tier.errors and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        errors = tier.errors
        admin.config_set("maxmemory", "0")
        admin.set("warm", b"now")
        deadline = time.monotonic() + 10
        while True:  # past the back-off, the next lookup is answered, in step with the stream
            after = await tier.get_many_async(["k:a", "warm"])
            if tier.up or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        await tier.aclose()
        return errors, after

    try:
        errors, after = asyncio.run(run())
    finally:
        tier.close()
    assert errors >= 1  # not silently lost
    assert after == [None, b"now"] and tier.up
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1
