"""Loopback load generator for ``embedserve serve`` (bounded: a request cap and a time cap per run).

Starts the server as a subprocess on a free loopback port (or uses ``--url``), then runs, one after
another, N async clients (one keep-alive connection each, httpx) sending M texts per request:

    1 x 1, 8 x 1, 32 x 1 (short texts), 4 x 32 (batches)

and prints texts/s and request latency p50/p99 for each, plus, in the same run, the in-process
``Embedder`` on the same texts (one big ``encode`` call, and one text at a time), so the HTTP cost
and the batching gain are read as ratios from one run. Texts are STS-B dev sentences.

    .venv/bin/python benchmarks/load.py --home ~/.embedserve [--seconds 5] [--requests 3000]

Client and server share the machine: on a small box the numbers are noisy and the client's own CPU
use is part of them. Report them as measured, with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

STSB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "stsb" / "stsb-en-dev.csv"
SCENARIOS = ((1, 1), (8, 1), (32, 1), (4, 32))


def load_texts(path: Path) -> list[str]:
    texts: list[str] = []
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.reader(f):
            texts.extend(row[:2])
    return [t for t in dict.fromkeys(texts) if t.strip()]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(home: Path | None, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, EMBEDSERVE_OFFLINE="1")
    if home is not None:
        env["EMBEDSERVE_HOME"] = str(home)
    cmd = [sys.executable, "-m", "embedserve", "serve", "--no-pull", "--host", f"127.0.0.1:{port}"]
    return subprocess.Popen(cmd, env=env)


def wait_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"server at {url} did not come up")


async def run_scenario(
    url: str, model: str, texts: list[str], clients: int, per_request: int, seconds: float, cap: int
) -> dict[str, float]:
    latencies: list[float] = []
    sent = 0
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        nonlocal sent, errors
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
            i = k * 7919
            while sent < cap and time.perf_counter() < deadline:
                sent += 1
                batch = [texts[(i + j) % len(texts)] for j in range(per_request)]
                i += per_request * clients
                t0 = time.perf_counter()
                try:
                    r = await c.post("/api/embed", json={"model": model, "input": batch})
                except httpx.HTTPError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    wall = time.perf_counter() - t0
    lat = sorted(latencies) or [float("nan")]
    return {
        "requests": len(lat),
        "errors": errors,
        "texts_per_s": len(lat) * per_request / wall,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
    }


def in_process(model: str, home: Path | None, texts: list[str], seconds: float) -> dict[str, float]:
    from dataclasses import replace

    from embedserve.config import load
    from embedserve.embedder import Embedder

    settings = replace(load(), offline=True)
    if home is not None:
        settings = replace(settings, home=home)
    emb = Embedder(model, settings=settings)
    emb.encode(texts[:64])  # warm up
    n = min(len(texts), 2000)
    t0 = time.perf_counter()
    emb.encode(texts[:n])
    bulk = n / (time.perf_counter() - t0)
    singles: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline and i < 2000:
        t0 = time.perf_counter()
        emb.encode([texts[i % len(texts)]])
        singles.append(time.perf_counter() - t0)
        i += 1
    return {
        "bulk_texts_per_s": bulk,
        "single_texts_per_s": len(singles) / sum(singles),
        "single_p50_ms": 1000 * statistics.median(singles),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="use a running server instead of starting one")
    p.add_argument("--home", type=Path, help="EMBEDSERVE_HOME holding the model")
    p.add_argument("--model", default="all-minilm")
    p.add_argument("--seconds", type=float, default=5.0, help="time cap per scenario")
    p.add_argument("--requests", type=int, default=3000, help="request cap per scenario")
    p.add_argument("--texts", type=Path, default=STSB)
    args = p.parse_args()

    texts = load_texts(args.texts)
    rng = np.random.default_rng(0)
    texts = [texts[i] for i in rng.permutation(len(texts))]
    proc = None
    url = args.url
    if url is None:
        port = _free_port()
        proc = start_server(args.home, port)
        url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url)
        httpx.post(url + "/api/embed", json={"model": args.model, "input": texts[:32]}, timeout=120)
        print(
            f"{len(texts)} STS-B dev sentences, model {args.model}, server {url}, "
            f"cpus {os.cpu_count()}, cap {args.seconds:g}s / {args.requests} requests per run"
        )
        print(f"{'clients x texts':>16} {'requests':>9} {'texts/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        for clients, per in SCENARIOS:
            r = asyncio.run(
                run_scenario(url, args.model, texts, clients, per, args.seconds, args.requests)
            )
            err = f"  ({int(r['errors'])} errors)" if r["errors"] else ""
            print(
                f"{clients:>7} x {per:<6} {int(r['requests']):>9} {r['texts_per_s']:>9.0f} "
                f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}{err}"
            )
        metrics = httpx.get(url + "/metrics").text
        for line in metrics.splitlines():
            if line.startswith(
                ("embedserve_batch_padded_tokens_total", "embedserve_batch_real_tokens_total")
            ):
                print("  " + line)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(20)
    r2 = in_process(args.model, args.home, texts, min(args.seconds, 5.0))
    print(
        f"in-process Embedder: {r2['bulk_texts_per_s']:.0f} texts/s in one encode() call; "
        f"{r2['single_texts_per_s']:.0f} texts/s one text at a time (p50 {r2['single_p50_ms']:.2f} ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
