"""Loopback load generator for ``embedserve serve`` (bounded: a request cap and a time cap per run).

Starts the server as a subprocess on a free loopback port (or uses ``--url``), then runs N async
clients (one keep-alive connection each) sending M texts per request to ``/api/embed``:

    1 x 1, 8 x 1, 32 x 1 (short texts), 4 x 32 (batches)

and, in the same rounds, the in-process ``Embedder`` on the same texts (one ``encode`` call over
all of them), so the server's throughput is read as a ratio to the library measured minutes apart,
not days. ``--rounds`` interleaves baseline and scenarios; the table shows the median round and each
scenario's ratio to its own round's baseline. Texts are STS-B dev sentences.

    .venv/bin/python benchmarks/load.py --home ~/.embedserve [--rounds 3] [--client raw|httpx|wrk]

Clients. The load generator shares the machine with the server, so its own CPU time is taken from
the server. ``raw`` (the default) writes prebuilt HTTP/1.1 requests on asyncio streams and reads
responses by ``Content-Length``: ~80 us of CPU per request, against ~1.5 ms for ``httpx``, the
typical Python client, kept for comparison with numbers measured with it. ``wrk`` (Debian's
package, C) runs ``benchmarks/wrk_embed.lua`` over the same texts. Every response's status is
checked (wrk: its non-2xx count), and with raw and httpx the first response of each scenario is
parsed and its shape checked.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

STSB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "stsb" / "stsb-en-dev.csv"
SCENARIOS = ((1, 1), (8, 1), (32, 1), (4, 32))

Post = Callable[[bytes], Awaitable[tuple[int, bytes]]]


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


class RawClient:
    """One keep-alive HTTP/1.1 connection; ``post(body)`` -> (status, body). Content-Length only."""

    def __init__(self, url: str, path: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(b"%s%d\r\n\r\n%s" % (self.head, len(body), body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError("response without Content-Length: the raw client cannot read it")
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class HttpxClient:
    def __init__(self, url: str, path: str) -> None:
        import httpx

        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.client = httpx.AsyncClient(base_url=url, timeout=60, limits=limits)
        self.path = path

    async def post(self, body: bytes) -> tuple[int, bytes]:
        r = await self.client.post(
            self.path, content=body, headers={"Content-Type": "application/json"}
        )
        return r.status_code, r.content

    async def close(self) -> None:
        await self.client.aclose()


CLIENTS = {"raw": RawClient, "httpx": HttpxClient}
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_embed.lua"


def _wrk_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def run_wrk(
    url: str, model: str, texts: list[str], clients: int, per_request: int, seconds: float
) -> dict[str, float]:
    """One wrk run (1 thread, ``clients`` connections) over ``texts``; wrk has no request cap."""
    if shutil.which("wrk") is None:
        raise SystemExit("--client wrk needs wrk on PATH (Debian: apt-get install wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")
        f.flush()
        env = dict(os.environ, WRK_TEXTS=f.name, WRK_MODEL=model, WRK_PER_REQUEST=str(per_request))
        cmd = [
            "wrk",
            "-t1",
            f"-c{clients}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(WRK_SCRIPT),
            url,
        ]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": requests,
        "errors": (int(bad.group(1)) if bad else 0)
        + (sum(int(g) for g in errors.groups()) if errors else 0),
        "texts_per_s": rate * per_request,
        "p50_ms": _wrk_ms(re.search(r"50%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": _wrk_ms(re.search(r"99%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
    }


async def run_scenario(
    url: str,
    client_kind: str,
    model: str,
    texts: list[str],
    clients: int,
    per_request: int,
    seconds: float,
    cap: int,
) -> dict[str, float]:
    # bodies built before the clock starts: the generator measures the server, not json.dumps
    bodies = [
        json.dumps({"model": model, "input": texts[i : i + per_request]}).encode()
        for i in range(0, len(texts) - per_request + 1, per_request)
    ]
    latencies: list[float] = []
    sent = 0
    errors = 0
    checked = False
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        nonlocal sent, errors, checked
        conn = CLIENTS[client_kind](url, "/api/embed")
        i = k * 7919
        try:
            while sent < cap and time.perf_counter() < deadline:
                sent += 1
                body = bodies[i % len(bodies)]
                i += clients
                t0 = time.perf_counter()
                try:
                    status, payload = await conn.post(body)
                except (OSError, asyncio.IncompleteReadError, RuntimeError):
                    errors += 1
                    await conn.close()
                    conn = CLIENTS[client_kind](url, "/api/embed")
                    continue
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    errors += 1
                elif not checked:
                    checked = True
                    vectors = json.loads(payload)["embeddings"]
                    if len(vectors) != per_request or not all(len(v) > 0 for v in vectors):
                        raise SystemExit(f"bad response: {payload[:200]!r}")
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    wall = time.perf_counter() - t0
    lat = sorted(latencies) or [float("nan")]
    return {
        "requests": len(latencies),
        "errors": errors,
        "texts_per_s": len(latencies) * per_request / wall,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
    }


class InProcess:
    """The library on the same texts: one ``encode`` over all of them, and one text at a time."""

    def __init__(self, model: str, home: Path | None) -> None:
        from dataclasses import replace

        from embedserve.config import load
        from embedserve.embedder import Embedder

        settings = replace(load(), offline=True)
        if home is not None:
            settings = replace(settings, home=home)
        self.embedder = Embedder(model, settings=settings)

    def bulk(self, texts: list[str]) -> float:
        self.embedder.encode(texts[:64])  # warm up
        t0 = time.perf_counter()
        self.embedder.encode(texts)
        return len(texts) / (time.perf_counter() - t0)

    def singles(self, texts: list[str], seconds: float) -> tuple[float, float]:
        times: list[float] = []
        deadline = time.perf_counter() + seconds
        for text in texts:
            if time.perf_counter() > deadline:
                break
            t0 = time.perf_counter()
            self.embedder.encode([text])
            times.append(time.perf_counter() - t0)
        return len(times) / sum(times), 1000 * statistics.median(times)


def wait_up(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"server at {url} did not come up")


def main() -> int:
    import httpx

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="use a running server instead of starting one")
    p.add_argument("--home", type=Path, help="EMBEDSERVE_HOME holding the model")
    p.add_argument("--model", default="all-minilm")
    p.add_argument("--client", choices=[*sorted(CLIENTS), "wrk"], default="raw")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    p.add_argument("--seconds", type=float, default=5.0, help="time cap per scenario")
    p.add_argument("--requests", type=int, default=3000, help="request cap per scenario")
    p.add_argument("--texts", type=Path, default=STSB)
    p.add_argument("--bulk-texts", type=int, default=2000, help="texts in the in-process baseline")
    p.add_argument(
        "--scenarios",
        default=",".join(f"{c}x{m}" for c, m in SCENARIOS),
        help="comma-separated CLIENTSxTEXTS (default: %(default)s)",
    )
    args = p.parse_args()
    try:
        scenarios = [tuple(int(v) for v in s.split("x")) for s in args.scenarios.split(",")]
    except ValueError:
        p.error(f"--scenarios: expected CLIENTSxTEXTS,..., got {args.scenarios!r}")

    texts = load_texts(args.texts)
    rng = np.random.default_rng(0)
    texts = [texts[i] for i in rng.permutation(len(texts))]
    bulk_texts = texts[: args.bulk_texts]
    proc = None
    url = args.url
    if url is None:
        port = _free_port()
        proc = start_server(args.home, port)
        url = f"http://127.0.0.1:{port}"
    rows: dict[tuple[int, ...], list[dict[str, float]]] = {s: [] for s in scenarios}
    baselines: list[float] = []
    try:
        wait_up(url)
        httpx.post(url + "/api/embed", json={"model": args.model, "input": texts[:32]}, timeout=120)
        local = InProcess(args.model, args.home)
        print(
            f"{len(texts)} STS-B dev sentences, model {args.model}, server {url}, client "
            f"{args.client}, cpus {os.cpu_count()}, {args.rounds} rounds, cap {args.seconds:g}s / "
            f"{args.requests} requests per run; in-process baseline: encode() of "
            f"{len(bulk_texts)} texts",
            flush=True,
        )
        for r in range(args.rounds):
            baselines.append(local.bulk(bulk_texts))
            line = [f"round {r + 1}: in-process {baselines[-1]:.0f} texts/s"]
            for clients, per in scenarios:
                if args.client == "wrk":
                    res = run_wrk(url, args.model, texts, clients, per, args.seconds)
                else:
                    res = asyncio.run(
                        run_scenario(
                            url,
                            args.client,
                            args.model,
                            texts,
                            clients,
                            per,
                            args.seconds,
                            args.requests,
                        )
                    )
                res["ratio"] = res["texts_per_s"] / baselines[-1]
                rows[(clients, per)].append(res)
                line.append(f"{clients}x{per} {res['texts_per_s']:.0f} ({res['ratio']:.0%})")
            print("  " + ", ".join(line), flush=True)
        metrics = httpx.get(url + "/metrics").text
        single_rate, single_p50 = local.singles(texts, min(args.seconds, 5.0))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(20)

    print(f"\nmedian of {args.rounds} rounds (ratio: to the in-process baseline of the same round)")
    print(
        f"{'clients x texts':>16} {'requests':>9} {'errors':>7} {'texts/s':>9} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'vs in-process':>14}"
    )
    for (clients, per), results in rows.items():
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print(
            f"{clients:>7} x {per:<6} {int(med['requests']):>9} {int(med['errors']):>7} "
            f"{med['texts_per_s']:>9.0f} {med['p50_ms']:>8.2f} {med['p99_ms']:>8.2f} "
            f"{med['ratio']:>13.0%}"
        )
    print(
        f"in-process Embedder: {statistics.median(baselines):.0f} texts/s in one encode() call "
        f"(rounds: {', '.join(f'{b:.0f}' for b in baselines)}); {single_rate:.0f} texts/s one text "
        f"at a time (p50 {single_p50:.2f} ms)"
    )
    for line in metrics.splitlines():
        if line.startswith(
            (
                "embedserve_batch_padded_tokens_total",
                "embedserve_batch_real_tokens_total",
                "embedserve_batch_size_sum",
                "embedserve_batch_size_count",
            )
        ):
            print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
