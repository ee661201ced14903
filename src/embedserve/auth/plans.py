"""Plans are data: limits per plan, defaults below, overridable by a TOML file (``--plans FILE``).

Defaults follow Ollama's hosted plans: Free runs 1 model at a time, Pro 3, Max 10; Pro includes
50x Free's compute and Max 5x Pro's, in 5-hour session and 7-day weekly windows. ``admin`` has no
limits and may use the admin routes (``/metrics``, pull/delete/copy, collections).

A TOML file names plans under ``[plans.NAME]``; a known plan's missing fields keep their defaults,
a new plan's missing fields are those of ``free``. ``inf`` (TOML's infinity) means unlimited::

    [plans.free]
    session_compute_seconds = 120
    [plans.team]
    concurrent_models = 5
    weekly_compute_seconds = inf
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from embedserve.errors import InvalidInput

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SESSION_SECONDS = 5 * 3600.0  # a session window lasts 5 hours from its first request
WEEK_SECONDS = 7 * 86400.0  # a weekly window, 7 days from its first request


@dataclass(frozen=True)
class Plan:
    name: str
    concurrent_models: float  # distinct models with requests in flight at once
    session_compute_seconds: float  # engine compute-seconds per 5 h session window
    weekly_compute_seconds: float  # ... per 7-day window
    requests_per_minute: float
    max_inputs: float  # inputs in one request
    admin: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float):
                value = None if math.isinf(value) else (int(value) if value.is_integer() else value)
            out[f.name] = value
        return out


_FREE_SESSION = 60.0
_FREE_WEEK = 300.0
_INF = math.inf

DEFAULT_PLANS: dict[str, Plan] = {
    "free": Plan("free", 1, _FREE_SESSION, _FREE_WEEK, 60, 64),
    "pro": Plan("pro", 3, 50 * _FREE_SESSION, 50 * _FREE_WEEK, 600, 512),
    "max": Plan("max", 10, 250 * _FREE_SESSION, 250 * _FREE_WEEK, 3000, 2048),
    "admin": Plan("admin", _INF, _INF, _INF, _INF, _INF, admin=True),
}

_NUMBERS = {f.name for f in fields(Plan) if f.name not in ("name", "admin")}


def _plan(name: str, base: Plan, table: Any, source: str) -> Plan:
    if not isinstance(table, dict):
        raise InvalidInput(f"{source}: [plans.{name}] must be a table")
    changes: dict[str, Any] = {"name": name}
    for key, value in table.items():
        if key == "admin":
            if not isinstance(value, bool):
                raise InvalidInput(f"{source}: plans.{name}.admin must be true or false")
            changes[key] = value
        elif key in _NUMBERS:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InvalidInput(
                    f"{source}: plans.{name}.{key} must be a number >= 0 (inf for unlimited)"
                )
            changes[key] = float(value)
        else:
            known = ", ".join(sorted(_NUMBERS | {"admin"}))
            raise InvalidInput(f"{source}: unknown field plans.{name}.{key} (known: {known})")
    return replace(base, **changes)


def load_plans(path: Path | None = None) -> dict[str, Plan]:
    """The default plans, overridden and extended by the TOML file at ``path`` if given."""
    plans = dict(DEFAULT_PLANS)
    if path is None:
        return plans
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"cannot read plans file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"plans file {path} is not valid TOML: {exc}") from None
    extra = set(data) - {"plans"}
    if extra:
        raise InvalidInput(f"{path}: unknown top-level key(s) {', '.join(sorted(extra))}")
    tables = data.get("plans", {})
    if not isinstance(tables, dict):
        raise InvalidInput(f"{path}: 'plans' must be a table of [plans.NAME] tables")
    for name, table in tables.items():
        plans[name] = _plan(name, plans.get(name, DEFAULT_PLANS["free"]), table, str(path))
    return plans
