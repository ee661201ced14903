"""CLI verbs for API keys: ``embedserve keys create|list|revoke|usage``.

They work on the key store directly (SQLite under ``EMBEDSERVE_HOME``, or PostgreSQL for
``EMBEDSERVE_DATABASE_URL``), so they work with or without a running server; a running server
picks up new and revoked keys within a couple of seconds. ``keys create`` prints the key once,
alone on the last line of stdout; nothing else ever shows more than its prefix.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from embedserve.cli.models import _table, human_ago
from embedserve.config import Settings, load
from embedserve.errors import AuthError


def _settings(args: argparse.Namespace) -> Settings:
    settings = load()
    if getattr(args, "plans", None):
        settings = replace(settings, plans_file=Path(args.plans))
    return settings


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return human_ago(datetime.fromtimestamp(ts, timezone.utc))


def _at(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def cmd_create(args: argparse.Namespace) -> int:
    from embedserve.auth import create_key
    from embedserve.auth.plans import load_plans
    from embedserve.auth.store import open_store

    settings = _settings(args)
    plans = load_plans(settings.plans_file)
    patterns = tuple(p.strip() for p in (args.models or "").split(",") if p.strip())
    store = open_store(settings)
    try:
        key, record = create_key(store, plans, args.plan, name=args.name, models=patterns)
    finally:
        store.close()
    models = ", ".join(patterns) if patterns else "all models"
    print(f"created key {record.name!r} (plan {record.plan}, prefix {record.prefix}, {models})")
    print("this is the only time the key is shown; store it now:")
    print(key)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from embedserve.auth.store import open_store

    store = open_store(_settings(args))
    try:
        records = store.list()
    finally:
        store.close()
    rows = [["NAME", "PLAN", "PREFIX", "MODELS", "CREATED", "LAST USED", "STATUS"]]
    for r in records:
        rows.append(
            [
                r.name,
                r.plan,
                r.prefix,
                ",".join(r.models) or "*",
                _when(r.created_at),
                _when(r.last_used_at),
                "revoked" if r.revoked else "active",
            ]
        )
    print(_table(rows))
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from embedserve.auth.store import open_store

    store = open_store(_settings(args))
    try:
        record = store.revoke(args.key, time.time())
    finally:
        store.close()
    print(f"revoked key {record.name!r} ({record.prefix})")
    return 0


def _limit(value: float) -> str:
    return "unlimited" if math.isinf(value) else f"{value:g}"


def cmd_usage(args: argparse.Namespace) -> int:
    from embedserve.auth.plans import load_plans
    from embedserve.auth.store import WINDOWS, open_store

    settings = _settings(args)
    plans = load_plans(settings.plans_file)
    store = open_store(settings)
    try:
        if args.key:
            record = store.find(args.key)
            if record is None:
                raise AuthError(f"no key named {args.key!r} or with that prefix")
            records = [record]
        else:
            records = store.list()
        usage = {r.id: store.usage(r.id) for r in records}
    finally:
        store.close()
    now = time.time()
    rows = [
        ["NAME", "PLAN", "WINDOW", "REQUESTS", "INPUTS", "TOKENS", "COMPUTE-S", "LIMIT-S", "RESETS"]
    ]
    for r in records:
        plan = plans.get(r.plan)
        for window, length in WINDOWS.items():
            stored = usage[r.id].get(window)
            row = stored if stored is not None and now < stored.resets_at else None
            limit = getattr(plan, f"{window}_compute_seconds", math.inf) if plan else math.inf
            rows.append(
                [
                    r.name,
                    r.plan,
                    window,
                    str(row.requests if row else 0),
                    str(row.inputs if row else 0),
                    str(row.tokens if row else 0),
                    f"{row.compute_seconds:.3f}" if row else "0.000",
                    _limit(limit),
                    _at(row.resets_at) if row else f"{length / 3600:g} h after next request",
                ]
            )
    print(_table(rows))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("keys", help="create, list, revoke API keys and show their usage")
    verbs = p.add_subparsers(dest="keys_command", metavar="VERB", parser_class=type(p))
    c = verbs.add_parser("create", help="create a key and print it once")
    c.add_argument("--plan", default="free", help="free | pro | max | admin (or a --plans plan)")
    c.add_argument("--name", help="a name to revoke it by (default key-PREFIX)")
    c.add_argument("--models", help="comma-separated model names or glob patterns it may use")
    c.add_argument("--plans", help="TOML file of plans (as given to serve --plans)")
    c.set_defaults(func=cmd_create)
    ls = verbs.add_parser("list", help="name, plan, prefix, created, last used (never the key)")
    ls.set_defaults(func=cmd_list)
    r = verbs.add_parser("revoke", help="revoke a key by name or prefix")
    r.add_argument("key", metavar="NAME|PREFIX")
    r.set_defaults(func=cmd_revoke)
    u = verbs.add_parser("usage", help="requests, inputs, tokens, compute-seconds per window")
    u.add_argument("key", nargs="?", metavar="NAME|PREFIX")
    u.add_argument("--plans", help="TOML file of plans (for the limits column)")
    u.set_defaults(func=cmd_usage)
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])
