"""The 20-key, mixed-plan load run: plan limits hold under concurrency (bounded, loopback only).

A server with auth on (uvicorn in a thread of this process, so a monitor can watch it from the
inside) serves 12 models (``--models``); 20 keys (8 Free, 7 Pro, 5 Max by default) each run several client
connections that pick a random model and a random 1-8 texts per request, as fast as the server
answers, for ``--seconds`` (and at most ``--max-requests`` in all). Plans come from a TOML (plans
are data) with small budgets, so the Free keys run out of their session budget during the run.

Checked, and printed per plan:

* *concurrent models*: a monitor between the auth middleware and the routes counts, per key, the
  distinct models whose requests are inside the routes at each moment; its maximum must never
  exceed the plan's number (this is measured where requests run, not in the limiter's own table);
* *budgets*: every 50 ms, each key's remaining session and weekly budget as the server sees it
  must never go below zero; at the end (after the final flush, read from the store) the metered
  compute past each budget (*overage*: spent by requests admitted while it had room, metered but
  not charged) is printed as a percentage of the budget;
* what was refused and why (429 by the limit named: concurrent models, session budget, rpm).

    .venv/bin/python benchmarks/auth_load.py [--seconds 20] [--engine fake|real --home H] [--json]

``--engine real`` serves the installed all-minilm under 12 tags (``cp``) from ``--home``; the
default fake engine (5 ms per batch) keeps the run about the auth path, not the model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "server"))

from load import RawClient

PLANS_TOML = """
[plans.free]
session_compute_seconds = {free_session}
weekly_compute_seconds = {free_week}
requests_per_minute = 240
[plans.pro]
session_compute_seconds = {pro_session}
weekly_compute_seconds = {pro_week}
requests_per_minute = 2400
[plans.max]
session_compute_seconds = {max_session}
weekly_compute_seconds = {max_week}
requests_per_minute = 12000
"""

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "wizards",
    "quietly",
    "judge",
    "boxing",
    "matches",
    "near",
    "the",
    "old",
    "harbour",
    "at",
    "dawn",
]


class KeyClient(RawClient):
    """RawClient with an Authorization header."""

    def __init__(self, url: str, path: str, key: str) -> None:
        super().__init__(url, path)
        self.head = self.head.replace(
            b"Content-Type:", b"Authorization: Bearer " + key.encode() + b"\r\nContent-Type:"
        )


class Monitor:
    """Innermost ASGI middleware: per key, the distinct models with requests inside the routes."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inside: dict[str, Counter[str]] = defaultdict(Counter)
        self.max_models: dict[str, int] = defaultdict(int)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        ticket = scope.get("embedserve.usage") if scope["type"] == "http" else None
        if ticket is None:
            await self.app(scope, receive, send)
            return
        key_id, model = ticket.principal.key_id, ticket.model
        inside = self.inside[key_id]
        inside[model] += 1
        self.max_models[key_id] = max(self.max_models[key_id], len(inside))
        try:
            await self.app(scope, receive, send)
        finally:
            inside[model] -= 1
            if inside[model] == 0:
                del inside[model]


def build_app(args: argparse.Namespace, tmp: Path) -> tuple[Any, Any, list[str], Any]:
    from starlette.middleware import Middleware

    from embedserve.auth.plans import load_plans
    from embedserve.auth.service import AuthService
    from embedserve.auth.sqlite_store import SQLiteKeyStore
    from embedserve.config import Settings
    from embedserve.server.app import create_app

    free = args.free_session
    plans_file = tmp / "plans.toml"
    plans_file.write_text(
        PLANS_TOML.format(
            free_session=free,
            free_week=5 * free,
            pro_session=50 * free,
            pro_week=250 * free,
            max_session=250 * free,
            max_week=1250 * free,
        )
    )
    plans = load_plans(plans_file)
    store = SQLiteKeyStore(tmp / "auth")
    service = AuthService(store, plans)
    models = [f"m{i:02d}" for i in range(args.models)]
    settings = Settings(home=tmp / "home", max_loaded_models=16, auth=True, max_queue=4096)
    if args.engine == "real":
        from embedserve.store.local import ModelStore

        home = Path(args.home).expanduser()
        model_store = ModelStore(home)
        for m in models:
            if model_store.find(m) is None:
                model_store.copy("all-minilm", m)
        settings = Settings(
            home=home, offline=True, max_loaded_models=16, auth=True, max_queue=4096
        )
        app = create_app(settings, auth=service)
    else:
        from serverkit import FakeLoader, FakeStore

        fake = FakeStore(installed=tuple(models))
        app = create_app(
            settings, loader=FakeLoader(fake, delay_per_batch=0.005), store=fake, auth=service
        )
    app.user_middleware.append(Middleware(Monitor))  # innermost: after auth admitted a request
    return app, service, models, plans


def find_monitor(app: Any) -> Monitor:
    node = app.middleware_stack
    while node is not None and not isinstance(node, Monitor):
        node = getattr(node, "app", None)
    assert node is not None
    return node


async def client_loop(
    url: str,
    key: str,
    models: list[str],
    deadline: float,
    budget: list[int],
    rng: random.Random,
    stats: dict[str, Counter[str]],
    plan: str,
    latencies: list[float],
) -> None:
    client = KeyClient(url, "/api/embed", key)
    try:
        while time.monotonic() < deadline and budget[0] > 0:
            budget[0] -= 1
            texts = [
                " ".join(rng.choices(WORDS, k=rng.randint(3, 24))) for _ in range(rng.randint(1, 8))
            ]
            body = json.dumps({"model": rng.choice(models), "input": texts}).encode()
            t0 = time.perf_counter()
            try:
                status, payload = await client.post(body)
            except (asyncio.IncompleteReadError, ConnectionError):
                # the server closed an idle keep-alive connection (its 5 s timeout) while this
                # loop was starved of CPU: count it, open a new one, send again
                stats[plan]["reconnects"] += 1
                await client.close()
                client = KeyClient(url, "/api/embed", key)
                continue
            if status == 200:
                latencies.append(time.perf_counter() - t0)
                stats[plan]["ok"] += 1
            elif status == 429:
                message = json.loads(payload)["error"]
                kind = (
                    "concurrent"
                    if message.startswith("concurrent")
                    else "session"
                    if message.startswith("session")
                    else "weekly"
                    if message.startswith("weekly")
                    else "rpm"
                    if message.startswith("rate")
                    else "429-other"
                )
                stats[plan][kind] += 1
                await asyncio.sleep(0.005 if kind == "concurrent" else 0.05)
            else:
                stats[plan][f"http-{status}"] += 1
    finally:
        await client.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--max-requests", type=int, default=40000)
    p.add_argument("--free", type=int, default=8)
    p.add_argument("--pro", type=int, default=7)
    p.add_argument("--max", type=int, default=5)
    p.add_argument("--connections", type=int, default=4, help="per key (Max keys get 3x)")
    p.add_argument("--models", type=int, default=12, help="models served (tags of one model)")
    p.add_argument(
        "--free-session",
        type=float,
        default=0.5,
        help="Free's session compute-seconds (Pro 50x, Max 250x)",
    )
    p.add_argument("--engine", choices=["fake", "real"], default="fake")
    p.add_argument("--home", help="EMBEDSERVE_HOME with all-minilm (for --engine real)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from serverkit import serve

    from embedserve.auth import create_key

    with tempfile.TemporaryDirectory(prefix="auth-load-") as tmpdir:
        tmp = Path(tmpdir)
        app, service, models, plans = build_app(args, tmp)
        keys: list[tuple[str, str, Any]] = []
        for plan, count in (("free", args.free), ("pro", args.pro), ("max", args.max)):
            for i in range(count):
                key, record = create_key(service.store, plans, plan, name=f"{plan}-{i}")
                keys.append((plan, key, record))
        stats: dict[str, Counter[str]] = defaultdict(Counter)
        latencies: list[float] = []
        min_remaining: dict[str, float] = {}
        with serve(app) as url:
            monitor_box: list[Monitor] = []
            stop = threading.Event()

            def sample() -> None:  # budgets seen by the server, every 50 ms
                while not stop.wait(0.05):
                    now = time.time()
                    for plan, _, record in keys:
                        for view in service.meter.view(record.id, plans[plan], now).values():
                            left = view.remaining
                            if left < min_remaining.get(record.id, float("inf")):
                                min_remaining[record.id] = left

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()

            async def run_all() -> float:
                rng = random.Random(args.seed)
                budget = [args.max_requests]
                deadline = time.monotonic() + args.seconds
                tasks = []
                for plan, key, _ in keys:
                    n = args.connections * (3 if plan == "max" else 1)
                    for _ in range(n):
                        tasks.append(
                            client_loop(
                                url,
                                key,
                                models,
                                deadline,
                                budget,
                                random.Random(rng.random()),
                                stats,
                                plan,
                                latencies,
                            )
                        )
                t0 = time.monotonic()
                await asyncio.gather(*tasks)
                return time.monotonic() - t0

            elapsed = asyncio.run(run_all())
            stop.set()
            sampler.join()
            monitor_box.append(find_monitor(app))
        # the server has shut down: its lifespan flushed the meter to the store
        monitor = monitor_box[0]
        result: dict[str, Any] = {
            "seconds": round(elapsed, 1),
            "engine": args.engine,
            "keys": len(keys),
            "plans": {},
        }
        violations = []
        for plan_name in ("free", "pro", "max"):
            plan = plans[plan_name]
            mine = [(k, r) for p_, k, r in keys if p_ == plan_name]
            if not mine:
                continue
            max_models = max(monitor.max_models.get(r.id, 0) for _, r in mine)
            used = []
            overage = []
            for _, r in mine:
                windows = service.store.usage(r.id)
                s = windows.get("session")
                used.append(s.compute_seconds if s else 0.0)
                for w in windows.values():
                    limit = getattr(plan, f"{w.window}_compute_seconds")
                    overage.append(max(0.0, w.compute_seconds - limit) / limit)
                if min_remaining.get(r.id, 0.0) < 0:
                    violations.append(f"{r.name}: remaining {min_remaining[r.id]:.4f} < 0")
            if max_models > plan.concurrent_models:
                violations.append(f"{plan_name}: {max_models} models > {plan.concurrent_models}")
            result["plans"][plan_name] = {
                "keys": len(mine),
                "concurrent_limit": int(plan.concurrent_models),
                "max_models_in_flight": max_models,
                "session_budget_s": plan.session_compute_seconds,
                "max_session_used_s": round(max(used), 4),
                "min_remaining_s": round(min(min_remaining.get(r.id, 0.0) for _, r in mine), 4),
                "max_overage_pct": round(100 * max(overage, default=0.0), 2),
                **dict(stats[plan_name]),
            }
        ok = sum(c["ok"] for c in stats.values())
        result["answered_per_s"] = round(ok / elapsed, 1)
        result["p50_ms"] = round(1000 * statistics.median(latencies), 1) if latencies else None
        result["violations"] = violations
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        cols = [
            "plan",
            "keys",
            "limit",
            "max in flight",
            "budget s",
            "max used s",
            "min left s",
            "overage %",
            "ok",
            "429 concurrent",
            "429 session",
            "429 rpm",
        ]
        print(" | ".join(cols))
        for name, r in result["plans"].items():
            print(
                " | ".join(
                    str(x)
                    for x in (
                        name,
                        r["keys"],
                        r["concurrent_limit"],
                        r["max_models_in_flight"],
                        r["session_budget_s"],
                        r["max_session_used_s"],
                        r["min_remaining_s"],
                        r["max_overage_pct"],
                        r.get("ok", 0),
                        r.get("concurrent", 0),
                        r.get("session", 0),
                        r.get("rpm", 0),
                    )
                )
            )
        print(
            f"{result['seconds']} s, {result['answered_per_s']} answered/s, "
            f"p50 {result['p50_ms']} ms, violations: {violations or 'none'}"
        )
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
