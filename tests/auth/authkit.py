"""A real server (uvicorn in a thread, fake engine) with auth on, over a temp SQLite key store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serverkit import FakeLoader, FakeStore, serve, settings

from embedserve.auth import create_key
from embedserve.auth.plans import Plan, load_plans
from embedserve.auth.service import AuthService
from embedserve.auth.sqlite_store import SQLiteKeyStore
from embedserve.server.app import create_app


@dataclass
class AuthServer:
    url: str
    store: SQLiteKeyStore
    plans: dict[str, Plan]
    service: AuthService
    loader: FakeLoader

    def key(self, plan: str = "free", **kw: Any) -> str:
        return create_key(self.store, self.plans, plan, **kw)[0]


@contextmanager
def auth_server(
    home: Path,
    *,
    plans_file: Path | None = None,
    delay: float = 0.0,
    installed: tuple[str, ...] = ("fake", "other", "third", "fourth"),
    flush_seconds: float = 0.2,
    hold: Callable[[Any], None] | None = None,
    **settings_kw: Any,
) -> Iterator[AuthServer]:
    """``hold(batch)`` (optional) runs at the start of every engine batch, e.g. to block it."""
    store = SQLiteKeyStore(home)
    plans = load_plans(plans_file)
    service = AuthService(store, plans, flush_seconds=flush_seconds)
    fake = FakeStore(installed=installed)
    loader = FakeLoader(fake, delay_per_batch=delay, fail=hold)
    app = create_app(settings(auth=True, **settings_kw), loader=loader, store=fake, auth=service)
    with serve(app) as url:
        yield AuthServer(url, store, plans, service, loader)
