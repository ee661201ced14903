"""``serve`` vs ``serve --ray`` and ``embed`` vs ``embed --ray``, same texts, interleaved rounds.

Online: a plain server stays up the whole run; each Ray layout (``1x2``: 1 replica x 2 threads,
``2x1``: 2 replicas x 1 thread) is started in turn, and every wrk scenario (1 x 1, 32 x 1) runs on
the plain server and on the Ray one back to back, ``--rounds`` times, so each ratio compares
numbers taken within the same minute. CPU per request is the server's whole process tree (Ray:
driver, GCS, raylet, proxy, controller, ingress, replicas, board) before and after each wrk run.

Offline: ``embed -i corpus.jsonl -o x.npy`` and ``embed --ray -i corpus.jsonl -o DIR``
alternately (ABBA: the order flips each round) on the STS-B train sentences; the Ray run's own
summary gives its start-up time. Start-up of each server (launch to first answered request) is
reported too.

    .venv/bin/python benchmarks/ray_bench.py --home ~/.embedserve [--rounds 2] [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import _free_port, load_texts, run_wrk  # noqa: E402

DATA = Path(os.environ.get("EMBEDSERVE_SHARED", Path(__file__).resolve().parents[1].parent / "shared")) / "data" / "stsb"
SCENARIOS = ((1, 1), (32, 1))
LAYOUTS = {"1x2": ("1", "2"), "2x1": ("2", "1")}
# The embedding cache off everywhere: wrk cycles through the same 2,000 texts, and the plain server
# (up for the whole run) would answer later rounds from its cache while each Ray server is new.
NO_CACHE = {"EMBEDSERVE_CACHE_MB": "0"}


def _group(pid: int) -> str:
    """A process's part: Ray's title (``ray::ServeReplica:embedserve:replica``), else its program
    or script name (``raylet``, ``gcs_server``, ``dashboard.py``, ``embedserve``)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in argv if a]
    if not words:
        return "?"
    if words[0].startswith("ray::"):  # the title gains ".method" while a call runs: drop it
        return words[0].split()[0].split(".")[0]
    if "python" in Path(words[0]).name and len(words) > 1:
        rest = [w for w in words[1:] if not w.startswith("-")]
        if "-m" in words:
            return words[words.index("-m") + 1]
        return Path(rest[0]).name if rest else "python"
    return Path(words[0]).name


def tree_cpu_parts(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of ``pid`` and all its descendants, from /proc, by part."""
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        ppid = int(fields[1])
        children.setdefault(ppid, []).append(int(entry))
        stats[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    parts: dict[str, float] = {}
    stack = [pid]
    while stack:
        p = stack.pop()
        group = _group(p)
        parts[group] = parts.get(group, 0.0) + stats.get(p, 0.0)
        stack.extend(children.get(p, []))
    return parts


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and all its descendants."""
    return sum(tree_cpu_parts(pid).values())


def idle_cpu(pid: int, seconds: float = 5.0) -> dict[str, Any]:
    """CPU ms per second the server's tree burns with no requests (Ray's background work)."""
    parts0 = tree_cpu_parts(pid)
    time.sleep(seconds)
    parts = {k: (v - parts0.get(k, 0.0)) * 1e3 / seconds for k, v in tree_cpu_parts(pid).items()}
    return {
        "idle_cpu_ms_per_s": sum(parts.values()),
        "idle_by_part": {k: round(v, 1) for k, v in sorted(parts.items()) if v >= 0.5},
    }


def start(home: Path, port: int, ray: tuple[str, str] | None, tmp: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, EMBEDSERVE_OFFLINE="1", EMBEDSERVE_HOME=str(home), **NO_CACHE)
    cmd = [sys.executable, "-m", "embedserve", "serve", "--no-pull", "--host", f"127.0.0.1:{port}"]
    if ray is not None:
        env["RAY_TMPDIR"] = str(tmp)
        (tmp / "ray").mkdir(parents=True, exist_ok=True)
        cmd += ["--ray", "--replicas", ray[0], "--replica-threads", ray[1]]
    else:
        env["EMBEDSERVE_THREADS"] = "2"
    log = open(tmp / f"server-{port}.log", "wb")  # noqa: SIM115 - lives as long as the server
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: see the server-*.log files")
        try:
            r = httpx.post(f"{url}/api/embed", json={"model": "all-minilm", "input": "warm"}, timeout=30)
            if r.status_code == 200:
                for _ in range(20):
                    httpx.post(f"{url}/api/embed", json={"model": "all-minilm", "input": "warm up"})
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"{url} did not come up")


def measure(url: str, pid: int, texts: list[str], clients: int, seconds: float) -> dict[str, Any]:
    parts0 = tree_cpu_parts(pid)
    try:
        result = run_wrk(url, "all-minilm", texts, clients, 1, seconds)
    except AttributeError:  # wrk printed a latency its parser does not read (e.g. over a minute)
        return {"requests": 0, "errors": -1, "texts_per_s": float("nan"), "p50_ms": float("nan"),
                "p99_ms": float("nan"), "cpu_ms_per_request": float("nan"), "cpu_ms_by_part": {}}
    parts1 = tree_cpu_parts(pid)
    n = max(1, result["requests"])
    parts = {k: (v - parts0.get(k, 0.0)) * 1e3 / n for k, v in parts1.items()}
    result["cpu_ms_per_request"] = sum(parts.values())
    result["cpu_ms_by_part"] = {k: round(v, 2) for k, v in sorted(parts.items()) if v >= 0.05}
    return result


def online(
    home: Path, rounds: int, seconds: float, tmp: Path, layouts: tuple[str, ...] = tuple(LAYOUTS)
) -> dict[str, list[dict[str, Any]]]:
    texts = load_texts(DATA / "stsb-en-dev.csv")[:2000]
    plain_port = _free_port()
    plain = start(home, plain_port, None, tmp)
    plain_url = f"http://127.0.0.1:{plain_port}"
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        t0 = time.monotonic()
        wait_ready(plain_url, plain)
        out["startup"] = [{"server": "plain", "up_s": time.monotonic() - t0, **idle_cpu(plain.pid)}]
        for layout, spec in LAYOUTS.items():
            if layout not in layouts:
                continue
            port = _free_port()
            t0 = time.monotonic()
            (tmp / layout).mkdir(exist_ok=True)
            proc = start(home, port, spec, tmp / layout)
            url = f"http://127.0.0.1:{port}"
            try:
                wait_ready(url, proc)
                up = time.monotonic() - t0
                out.setdefault("startup", []).append({"server": layout, "up_s": up, **idle_cpu(proc.pid)})
                print(f"{layout}: up in {up:.1f} s", file=sys.stderr)
                for r in range(rounds):
                    for clients, _ in SCENARIOS:
                        for name, u, p in (("plain", plain_url, plain.pid), (layout, url, proc.pid)):
                            res = measure(u, p, texts, clients, seconds)
                            res.update(round=r, clients=clients, server=name, pair=layout)
                            out.setdefault(f"{layout}/{clients}", []).append(res)
                            print(json.dumps(res), file=sys.stderr)
            finally:
                proc.terminate()
                proc.wait(120)
    finally:
        plain.terminate()
        plain.wait(60)
    return out


def offline(home: Path, rounds: int, tmp: Path, limit: int = 0) -> list[dict[str, float]]:
    texts = load_texts(DATA / "stsb-en-train.csv")
    if limit:
        texts = texts[:limit]
    corpus = tmp / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    env = dict(
        os.environ, EMBEDSERVE_OFFLINE="1", EMBEDSERVE_HOME=str(home), RAY_TMPDIR=str(tmp), **NO_CACHE
    )
    (tmp / "ray").mkdir(exist_ok=True)
    rows = []
    for r in range(rounds):
        order = ("embed", "embed --ray") if r % 2 == 0 else ("embed --ray", "embed")  # ABBA
        for mode in order:
            cmd = [sys.executable, "-m", "embedserve", "embed", "-m", "all-minilm", "-i", str(corpus)]
            if mode == "embed":
                cmd += ["-o", str(tmp / "plain.npy"), "-f", "npy"]
            else:
                out = tmp / f"ray-out-{r}"
                shutil.rmtree(out, ignore_errors=True)
                cmd += ["--ray", "-o", str(out), "--shard-rows", "1024"]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t0
            line = [ln for ln in proc.stderr.splitlines() if ln.startswith("embedded")][-1]
            startup = re.search(r"Ray start ([\d.]+) s", line)
            job = re.search(r" in ([\d.]+) s \(", line)  # the job's own seconds (Ray: start-up included)
            row = {
                "round": r,
                "mode": mode,
                "texts": len(texts),
                "wall_s": wall,
                "texts_per_s": len(texts) / wall,
                "ray_start_s": float(startup.group(1)) if startup else 0.0,
                "job_s": float(job.group(1)) if job else float("nan"),
            }
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, default=Path.home() / ".embedserve")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--skip-online", action="store_true")
    ap.add_argument("--layouts", default=",".join(LAYOUTS), help="Ray layouts to run (1x2,2x1)")
    ap.add_argument("--offline-rounds", type=int, default=None)
    ap.add_argument("--skip-offline", action="store_true")
    ap.add_argument("--offline-limit", type=int, default=0, help="first N texts only (smoke runs)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    report: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        if not args.skip_online:
            runs = online(args.home, args.rounds, args.seconds, tmp, tuple(args.layouts.split(",")))
            table = {}
            report["startup"] = runs.pop("startup")
            for key, rows in runs.items():
                layout = key.split("/")[0]
                base = [x for x in rows if x["server"] == "plain"]
                ray = [x for x in rows if x["server"] == layout]
                med = lambda xs, k: statistics.median(x[k] for x in xs)  # noqa: E731
                table[key] = {
                    "plain_rps": med(base, "texts_per_s"),
                    "ray_rps": med(ray, "texts_per_s"),
                    "ratio": statistics.median(
                        r["texts_per_s"] / b["texts_per_s"] for r, b in zip(ray, base)
                    ),
                    "plain_p50_ms": med(base, "p50_ms"),
                    "ray_p50_ms": med(ray, "p50_ms"),
                    "plain_cpu_ms": med(base, "cpu_ms_per_request"),
                    "ray_cpu_ms": med(ray, "cpu_ms_per_request"),
                    "errors": sum(x["errors"] for x in rows),
                    "ray_cpu_ms_by_part": {
                        part: round(statistics.median(x["cpu_ms_by_part"].get(part, 0.0) for x in ray), 2)
                        for part in sorted({p for x in ray for p in x["cpu_ms_by_part"]})
                    },
                }
            report["online"] = table
        if not args.skip_offline:
            report["offline"] = offline(
                args.home, args.offline_rounds or args.rounds, tmp, args.offline_limit
            )
    except SystemExit:
        for log in tmp.rglob("server-*.log"):
            print(log, log.read_text(errors="replace")[-2000:], file=sys.stderr)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
