"""Cloud mode: API keys, plans, usage metering and the auth middleware (``serve --auth``).

``build(settings)`` opens the key store and plan table a server (or the CLI) uses;
``middleware(service, settings)`` is what ``create_app`` adds in front of the routes.
"""

from __future__ import annotations

from starlette.middleware import Middleware

from embedserve.auth.keys import KeyRecord
from embedserve.auth.plans import DEFAULT_PLANS, Plan, load_plans
from embedserve.auth.service import AuthService, Principal, Ticket
from embedserve.auth.store import KeyStore, open_store
from embedserve.config import Settings


def _routes() -> list:  # type: ignore[type-arg]
    from embedserve.auth.routes import ROUTES as routes

    return list(routes)


ROUTES = _routes()


def create_key(
    store: KeyStore,
    plans: dict[str, Plan],
    plan: str,
    *,
    name: str | None = None,
    models: tuple[str, ...] = (),
) -> tuple[str, KeyRecord]:
    """Make a key on ``plan``, store its hash, return ``(key, record)``: the only time the key
    exists outside its holder's hands."""
    import time
    import uuid

    from embedserve.auth.keys import generate_key, hash_key, key_prefix
    from embedserve.errors import InvalidInput
    from embedserve.store.names import canonical

    if plan not in plans:
        raise InvalidInput(f"unknown plan {plan!r} (plans: {', '.join(sorted(plans))})")
    for pattern in models:
        if not any(c in pattern for c in "*?["):
            canonical(pattern)  # a plain name must be a valid model name
    key = generate_key()
    prefix = key_prefix(key)
    record = KeyRecord(
        id=uuid.uuid4().hex,
        name=name or f"key-{prefix[4:]}",
        plan=plan,
        prefix=prefix,
        hash=hash_key(key),
        models=tuple(models),
        created_at=time.time(),
    )
    store.create(record)
    return key, record


def build(settings: Settings) -> AuthService:
    plans = load_plans(settings.plans_file)  # a bad file fails before anything opens
    return AuthService(open_store(settings), plans)


def middleware(service: AuthService | None, settings: Settings) -> list[Middleware]:
    if service is None:
        return []
    from embedserve.auth.middleware import AuthMiddleware

    return [Middleware(AuthMiddleware, service=service, max_body_bytes=settings.max_body_bytes)]


__all__ = [
    "DEFAULT_PLANS",
    "AuthService",
    "KeyRecord",
    "KeyStore",
    "Plan",
    "Principal",
    "Ticket",
    "build",
    "create_key",
    "load_plans",
    "middleware",
    "open_store",
]
