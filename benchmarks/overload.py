"""Overload: how much of its capacity a server still serves when clients without backoff ask for
many times more than it can do (bounded: a time cap per run, loopback only).

Per round and per server: *capacity* is the texts/s of 8 keep-alive connections x 16 short texts
(STS-B dev sentences); *overload* is 256 connections x 16 texts (the issue's scenario, ~30x the
work the server can queue) with every client sending its next request as soon as an answer (200
or 503) arrives. Reported: goodput (texts/s of the 200s) as a share of the same round's capacity,
refusals/s, the p50/p99 latency of the *accepted* requests against 2 x (queue length / capacity),
and the server's RSS before and after.

``--src LABEL=DIR`` (repeatable) runs the server from another checkout's ``src`` (e.g. a worktree
of an older commit), so an old and a new server are compared in interleaved rounds of one run:

    .venv/bin/python benchmarks/overload.py --home ~/.embedserve --src before=/tmp/old --src after=.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import STSB, RawClient, _free_port, load_texts, wait_up  # noqa: E402

MAX_QUEUE = 512  # the server's default pending inputs per model


def start(src: Path, home: Path | None, port: int) -> subprocess.Popen[bytes]:
    # the embedding cache off: the flood repeats texts, and hits would be measured instead of work
    env = dict(os.environ, EMBEDSERVE_OFFLINE="1", EMBEDSERVE_CACHE_MB="0", PYTHONPATH=str(src / "src"))
    if home is not None:
        env["EMBEDSERVE_HOME"] = str(home)
    cmd = [sys.executable, "-m", "embedserve", "serve", "--no-pull", "--host", f"127.0.0.1:{port}"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def flood(url: str, bodies: list[bytes], per: int, clients: int, seconds: float) -> dict[str, float]:
    ok_lat: list[float] = []
    refused = 0
    other = 0
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        nonlocal refused, other
        conn = RawClient(url, "/api/embed")
        i = k * 7919
        try:
            while time.perf_counter() < deadline:
                body = bodies[i % len(bodies)]
                i += clients
                t0 = time.perf_counter()
                try:
                    status, _ = await conn.post(body)
                except (OSError, asyncio.IncompleteReadError, RuntimeError):
                    other += 1
                    await conn.close()
                    conn = RawClient(url, "/api/embed")
                    continue
                if status == 200:
                    ok_lat.append(time.perf_counter() - t0)
                elif status == 503:
                    refused += 1
                else:
                    other += 1
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    wall = time.perf_counter() - t0
    lat = sorted(ok_lat) or [float("nan")]
    return {
        "goodput": len(ok_lat) * per / wall,
        "refused_per_s": refused / wall,
        "other": other,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", type=Path, help="EMBEDSERVE_HOME holding the model")
    p.add_argument("--model", default="all-minilm")
    p.add_argument("--src", action="append", default=[], help="LABEL=DIR (repeatable; default: this checkout)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--per", type=int, default=16, help="texts per request")
    p.add_argument("--clients", type=int, default=256, help="connections in the overload run")
    p.add_argument("--texts", type=Path, default=STSB)
    args = p.parse_args()
    here = Path(__file__).resolve().parents[1]
    servers = [(s.split("=", 1)[0], Path(s.split("=", 1)[1]).resolve()) for s in args.src] or [("this", here)]
    texts = load_texts(args.texts)
    texts = sorted(texts, key=len)[: len(texts) // 2]  # short texts: the most requests per second
    bodies = [
        json.dumps({"model": args.model, "input": texts[i : i + args.per]}).encode()
        for i in range(0, len(texts) - args.per + 1, args.per)
    ]
    rows: dict[str, list[dict[str, float]]] = {label: [] for label, _ in servers}
    print(f"{len(texts)} short STS-B dev texts, {args.per} per request; capacity 8 connections, "
          f"overload {args.clients}; {args.seconds:g} s per run, {args.rounds} interleaved rounds; cpus "
          f"{len(os.sched_getaffinity(0))}", flush=True)
    for r in range(args.rounds):
        for label, src in servers:
            port = _free_port()
            proc = start(src, args.home, port)
            url = f"http://127.0.0.1:{port}"
            try:
                wait_up(url)
                import httpx

                httpx.post(url + "/api/embed", json={"model": args.model, "input": texts[:64]}, timeout=120)
                cap = asyncio.run(flood(url, bodies, args.per, 8, args.seconds))
                rss0 = rss_mb(proc.pid)
                over = asyncio.run(flood(url, bodies, args.per, args.clients, args.seconds))
                rss1 = rss_mb(proc.pid)
            finally:
                proc.terminate()
                proc.wait(30)
            res = {
                "capacity": cap["goodput"],
                "cap_p99_ms": cap["p99_ms"],
                **over,
                "share": over["goodput"] / cap["goodput"],
                "bound_ms": 2000 * MAX_QUEUE / cap["goodput"],
                "rss0": rss0,
                "rss1": rss1,
            }
            rows[label].append(res)
            print(f"  round {r + 1} {label}: capacity {cap['goodput']:.0f} texts/s; overload goodput "
                  f"{over['goodput']:.0f} ({res['share']:.0%}), {over['refused_per_s']:.0f} refusals/s, "
                  f"accepted p99 {over['p99_ms']:.0f} ms (bound {res['bound_ms']:.0f}), RSS "
                  f"{rss0:.0f} -> {rss1:.0f} MB", flush=True)
    print(f"\nmedian of {args.rounds} rounds")
    print(f"{'server':>8} {'capacity':>9} {'goodput':>8} {'share':>6} {'refused/s':>10} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'bound ms':>9} {'RSS MB':>12} {'errors':>6}")
    for label, results in rows.items():
        med = {k: statistics.median(x[k] for x in results) for k in results[0]}
        print(f"{label:>8} {med['capacity']:>9.0f} {med['goodput']:>8.0f} {med['share']:>6.0%} "
              f"{med['refused_per_s']:>10.0f} {med['p50_ms']:>7.0f} {med['p99_ms']:>7.0f} "
              f"{med['bound_ms']:>9.0f} {med['rss0']:>5.0f}->{med['rss1']:<5.0f} {int(med['other']):>6}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
