"""What a cache miss costs: cache off vs memory vs Redis, on texts never seen, with the noise shown.

Every text is sent once to every variant and to no variant twice, so each request is a miss in
each cache. The variants:

* ``off_a`` and ``off_b``: two identical cache-off variants; their ratio is the noise floor (what
  "the same thing, measured twice" differs by);
* ``memory``: the in-process LRU only (256 MiB);
* ``redis``: Redis only, a loopback ``redis-server`` this script starts (each miss pays one
  ``MGET`` before the model and a background ``SET`` after it);
* ``redis_base`` (with ``--baseline-src DIR``): ``redis`` running another checkout's ``src`` (e.g.
  the commit before a change) against its own Redis database, so old and new code are compared in
  one window; in ``library-1`` also ``memory_base``, both over the same engine in this process
  (the other checkout's package is imported under another name).

Modes, each in ``--rounds`` rounds; within a round the variants are interleaved request by request
(in an order shuffled per request), so load drifts hit all of them alike:

* ``server-1``: ``embedserve serve`` subprocesses (real all-minilm), one keep-alive connection,
  single-text requests, latency;
* ``server-32``: the same with 32-text requests;
* ``server-conc``: ``--clients`` threads at once against one server, single-text requests,
  texts/s per burst (the variants take turns, rotating per round);
* ``library-1``: ``Embedder.encode`` of one text in-process over one shared engine.

Every server first embeds ``--warm`` distinct texts (misses), as one that has run a while. With
``--fresh`` the server modes start new processes every round: two processes of the same code differ
by 2-6 % here (their per-run ratio moves between runs), so only then does the rounds' spread of
``off_b / off_a`` include that difference, and a variant judged against it is judged fairly.

For each mode and variant: the median over all samples, and the ratio to ``off_a`` taken per pair
(the same texts, back to back; in ``server-conc`` the same burst in the same round), its median
over all pairs and per round. ``off_b / off_a`` gives the noise: a variant is "within noise" when
its median per-round ratio lies inside the range of ``off_b / off_a``'s per-round ratios.

    .venv/bin/python benchmarks/cache_miss_bench.py --home DIR [--rounds 7] [--modes server-1,...]
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cache_bench import MODEL, Server, redis_server

Timed = Callable[[list[str]], float]  # sends texts, returns seconds


def unique_sentences() -> list[str]:
    from embedserve.eval.data import default_data_dir, load_stsb

    seen: dict[str, None] = {}
    for split in ("train", "dev"):
        try:
            pairs = load_stsb(split, SHARED_DATA if SHARED_DATA.is_dir() else None)
        except Exception:  # noqa: BLE001 - the packaged data has dev only
            pairs = load_stsb(split, default_data_dir()) if split == "dev" else []
        for a, b, _ in pairs:
            seen.setdefault(a, None)
            seen.setdefault(b, None)
    texts = list(seen)
    random.Random(7).shuffle(texts)
    return texts


SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def import_renamed(src: Path, name: str) -> Any:
    """``src``'s ``embedserve`` package imported as ``name`` (a copy with its imports rewritten),
    beside this checkout's, so both codes run in one process over one engine."""
    import importlib
    import re
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="embedserve-base-"))
    shutil.copytree(src / "embedserve", root / name)
    for path in (root / name).rglob("*.py"):
        code = path.read_text()
        path.write_text(re.sub(r"\bembedserve(?=[. ]|$)", name, code, flags=re.MULTILINE))
    sys.path.insert(0, str(root))
    for sub in ("", ".embedder", ".cache", ".cache.remote"):
        importlib.import_module(name + sub)
    return sys.modules[name]


def interleaved(
    variants: dict[str, Timed], batches: list[list[str]], rounds: int, seed: int = 13
) -> dict[str, list[list[float]]]:
    """Per variant, per round, the seconds of each request. Request j goes to every variant back
    to back, in an order shuffled per request (seeded), so neither drift nor what ran just before
    (a background write, a warm cache line) favours one variant."""
    names = list(variants)
    rng = random.Random(seed)
    out: dict[str, list[list[float]]] = {n: [[] for _ in range(rounds)] for n in names}
    per_round = len(batches) // rounds
    for r in range(rounds):
        for j in range(per_round):
            batch = batches[r * per_round + j]
            order = names[:]
            rng.shuffle(order)
            for name in order:
                out[name][r].append(variants[name](batch))
    return out


def extra_ci(rounds: list[list[float]], *, resamples: int = 2000, seed: int = 11) -> tuple[float, float]:
    """A 95 % interval for the median paired difference: a bootstrap that resamples whole rounds
    (pairs within a round share that round's drift, so they are not independent)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays = [np.asarray(r) for r in rounds]
    medians = [
        float(np.median(np.concatenate([arrays[i] for i in rng.integers(0, len(arrays), len(arrays))])))
        for _ in range(resamples)
    ]
    lo, hi = np.percentile(medians, [2.5, 97.5])
    return float(lo), float(hi)


def summarise(samples: dict[str, list[list[float]]], *, higher_is_better: bool = False) -> dict:
    """Per variant: the median sample, and ratios to ``off_a``. Samples of one index are paired
    (the same texts, back to back), so a ratio is taken per pair; a round's ratio is the median of
    its pairs. ``paired_median`` pools all pairs; ``round_min``/``round_max`` bound the rounds.
    ``paired_extra_us``: the median extra time per request, paired, with its 95 % interval
    (``extra_us_ci95_lo``/``_hi``, :func:`extra_ci`)."""
    base = samples["off_a"]
    result: dict[str, dict[str, float]] = {}
    for name, rounds in samples.items():
        pairs = [[x / b for x, b in zip(r, rb)] for r, rb in zip(rounds, base)]
        if higher_is_better:  # report cost as a time ratio: off rate / variant rate
            pairs = [[1 / x for x in r] for r in pairs]
        per_round = [statistics.median(r) for r in pairs]
        result[name] = {
            "median": statistics.median([x for r in rounds for x in r]),
            "paired_median": statistics.median([x for r in pairs for x in r]),
            "round_median": statistics.median(per_round),
            "round_min": min(per_round),
            "round_max": max(per_round),
            "rounds": len(rounds),
            "samples": sum(len(r) for r in rounds),
        }
    lo, hi = result["off_b"]["round_min"], result["off_b"]["round_max"]
    for name in ("memory", "redis", "memory_base", "redis_base"):
        if name in result:
            result[name]["within_noise"] = float(lo <= result[name]["round_median"] <= hi)
    if not higher_is_better:  # what a ratio near 1 hides: the median extra time per request
        for name, rounds in samples.items():
            diffs = [x - b for r, rb in zip(rounds, base) for x, b in zip(r, rb)]
            result[name]["paired_extra_us"] = 1e6 * statistics.median(diffs)
            lo_ci, hi_ci = extra_ci([[x - b for x, b in zip(r, rb)] for r, rb in zip(rounds, base)])
            result[name]["extra_us_ci95_lo"] = 1e6 * lo_ci
            result[name]["extra_us_ci95_hi"] = 1e6 * hi_ci
    for name in ("redis", "memory"):  # the change itself: variant / its base, paired the same way
        if name + "_base" not in samples:
            continue
        pairs = [
            [x / b for x, b in zip(r, rb)]
            for r, rb in zip(samples[name], samples[name + "_base"])
        ]
        if higher_is_better:
            pairs = [[1 / x for x in r] for r in pairs]
        per_round = [statistics.median(r) for r in pairs]
        result[name + "_vs_base"] = {
            "paired_median": statistics.median([x for r in pairs for x in r]),
            "round_median": statistics.median(per_round),
            "round_min": min(per_round),
            "round_max": max(per_round),
        }
    return result


def burst(server: Server, texts: list[str], clients: int) -> float:
    """texts/s of ``clients`` threads sending ``texts`` one per request to ``server``."""
    it: Iterator[str] = iter(texts)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        try:
            while True:
                with lock:
                    text = next(it, None)
                if text is None:
                    return
                body = json.dumps({"model": MODEL, "input": [text]})
                conn.request("POST", "/api/embed", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"status {resp.status}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=work) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return len(texts) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--single", type=int, default=120, help="single-text requests per round")
    ap.add_argument("--batched", type=int, default=12, help="32-text requests per round")
    ap.add_argument("--burst", type=int, default=160, help="texts per burst in server-conc")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--modes", default="server-1,server-32,server-conc,library-1")
    ap.add_argument(
        "--baseline-src", type=Path,
        help="a checkout's src/ for the redis_base (and library memory_base) variants"
    )
    ap.add_argument(
        "--fresh", action="store_true",
        help="new server processes every round, so the rounds' spread includes the differences "
        "between two processes of the same code (2-6 %% here)",
    )
    ap.add_argument(
        "--warm", type=int, default=200,
        help="distinct texts each new server embeds before it is measured (as one that has run "
        "a while: the Redis variant's hit rate has settled)",
    )
    args = ap.parse_args()
    modes = args.modes.split(",")
    texts = iter(unique_sentences())

    def take(n: int) -> list[str]:
        out = [next(texts) for _ in range(n)]
        return out

    result: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rounds": args.rounds,
    }

    def report(key: str, value: object) -> None:
        result[key] = value
        print(json.dumps({key: value}), file=sys.stderr, flush=True)  # progress

    with redis_server() as redis_url:
        if redis_url is None:
            sys.exit("redis-server is not installed")
        if any(m.startswith("server") for m in modes):
            envs = {
                "off_a": {"EMBEDSERVE_CACHE_MB": "0"},
                "off_b": {"EMBEDSERVE_CACHE_MB": "0"},
                "memory": {"EMBEDSERVE_CACHE_MB": "256"},
                "redis": {"EMBEDSERVE_CACHE_MB": "0", "EMBEDSERVE_REDIS_URL": redis_url},
            }
            if args.baseline_src is not None:
                base_url = redis_url.rsplit("/", 1)[0] + "/1"  # its own db: texts stay misses
                envs["redis_base"] = {
                    "EMBEDSERVE_CACHE_MB": "0", "EMBEDSERVE_REDIS_URL": base_url,
                    "PYTHONPATH": str(args.baseline_src.resolve()),
                }
            single = [[t] for t in take(args.rounds * args.single)] if "server-1" in modes else []
            flat = take(args.rounds * args.batched * 32) if "server-32" in modes else []
            batched = [flat[i : i + 32] for i in range(0, len(flat), 32)]
            bursts = [take(args.burst) for _ in range(args.rounds)] if "server-conc" in modes else []
            samples: dict[str, dict[str, list[list[float]]]] = {}

            def add(mode: str, got: dict[str, list[list[float]]]) -> None:
                into = samples.setdefault(mode, {n: [] for n in got})
                for n, rounds_ in got.items():
                    into[n].extend(rounds_)

            servers: dict[str, Server] = {}
            try:
                for r in range(args.rounds):
                    if args.fresh or not servers:  # --fresh: new processes every round
                        for server in servers.values():
                            server.close()
                        servers = {n: Server(args.home, env) for n, env in envs.items()}
                        warm = take(args.warm)  # misses, as a long-running server has seen
                        for server in servers.values():
                            for text in warm:
                                server.embed([text])
                    timed = {n: sv.embed for n, sv in servers.items()}
                    if single:
                        per = len(single) // args.rounds
                        add("server-1", interleaved(timed, single[r * per : (r + 1) * per], 1, r))
                    if batched:
                        per = len(batched) // args.rounds
                        add("server-32", interleaved(timed, batched[r * per : (r + 1) * per], 1, r))
                    if bursts:
                        order = list(servers)
                        random.Random(r).shuffle(order)
                        add("server-conc", {n: [[burst(servers[n], bursts[r], args.clients)]]
                                            for n in order})
            finally:
                for server in servers.values():
                    server.close()
            for mode in ("server-1", "server-32", "server-conc"):
                if mode in samples:
                    report(mode, summarise(samples[mode], higher_is_better=mode == "server-conc"))
        if "library-1" in modes:
            from embedserve.cache import EmbeddingCache
            from embedserve.cache.remote import RedisTier
            from embedserve.config import Settings
            from embedserve.embedder import Embedder
            from embedserve.service.loader import load_engine

            settings = Settings.from_env({"EMBEDSERVE_HOME": str(args.home), "EMBEDSERVE_OFFLINE": "1"})
            engine = load_engine(MODEL, settings)
            remote = RedisTier(redis_url, ttl=3600, timeout=1.0)
            embedders = {
                "off_a": Embedder.from_engine(engine),
                "off_b": Embedder.from_engine(engine),
                "memory": Embedder.from_engine(engine, cache=EmbeddingCache(256 << 20)),
                "redis": Embedder.from_engine(engine, cache=EmbeddingCache(0, remote)),
            }
            if args.baseline_src is not None:  # the other checkout's cache, in this process
                base = import_renamed(args.baseline_src, "embedserve_base")
                base_remote = base.cache.remote.RedisTier(
                    redis_url.rsplit("/", 1)[0] + "/1", ttl=3600, timeout=1.0
                )
                make = base.embedder.Embedder.from_engine
                embedders["memory_base"] = make(engine, cache=base.cache.EmbeddingCache(256 << 20))
                embedders["redis_base"] = make(engine, cache=base.cache.EmbeddingCache(0, base_remote))
            for text in take(args.warm):  # misses, as for the servers
                for e in embedders.values():
                    e.encode([text])

            def encoder(e: Embedder) -> Timed:
                def run(batch: list[str]) -> float:
                    t0 = time.perf_counter()
                    e.encode(batch)
                    return time.perf_counter() - t0

                return run

            batches = [[t] for t in take(args.rounds * args.single)]
            timed = {n: encoder(e) for n, e in embedders.items()}
            report("library-1", summarise(interleaved(timed, batches, args.rounds)))
            remote.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
