"""The key store protocol: keys and their usage windows, behind one small interface.

Two implementations share it: :class:`~embedserve.auth.sqlite_store.SQLiteKeyStore` (the default,
``EMBEDSERVE_HOME/auth.db``) and a PostgreSQL one for ``EMBEDSERVE_DATABASE_URL`` (scale-out: many
server processes, one table). Usage is written as *deltas* added in the database
(``x = x + delta``), so several processes metering the same key compose instead of overwriting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from embedserve.auth.keys import KeyRecord
from embedserve.auth.plans import SESSION_SECONDS, WEEK_SECONDS

WINDOWS: dict[str, float] = {"session": SESSION_SECONDS, "weekly": WEEK_SECONDS}


@dataclass
class UsageDelta:
    """What one key used since the last flush."""

    first_at: float
    last_at: float
    requests: int = 0
    inputs: int = 0
    tokens: int = 0
    compute_seconds: float = 0.0

    def add(self, other: UsageDelta) -> None:
        self.first_at = min(self.first_at, other.first_at)
        self.last_at = max(self.last_at, other.last_at)
        self.requests += other.requests
        self.inputs += other.inputs
        self.tokens += other.tokens
        self.compute_seconds += other.compute_seconds


@dataclass(frozen=True)
class WindowUsage:
    """One key's totals in one window (``session`` or ``weekly``), started at ``started_at``."""

    window: str
    started_at: float
    requests: int
    inputs: int
    tokens: int
    compute_seconds: float

    @property
    def resets_at(self) -> float:
        return self.started_at + WINDOWS[self.window]


def roll(row: WindowUsage | None, window: str, delta: UsageDelta) -> WindowUsage:
    """``row`` plus ``delta``, or a new window from ``delta.first_at`` if ``row`` has expired."""
    if row is None or delta.first_at >= row.started_at + WINDOWS[window]:
        return WindowUsage(
            window,
            delta.first_at,
            delta.requests,
            delta.inputs,
            delta.tokens,
            delta.compute_seconds,
        )
    return WindowUsage(
        window,
        row.started_at,
        row.requests + delta.requests,
        row.inputs + delta.inputs,
        row.tokens + delta.tokens,
        row.compute_seconds + delta.compute_seconds,
    )


class KeyStore(Protocol):
    def create(self, record: KeyRecord) -> None:
        """Add a key; ``AuthError`` if its name is taken."""

    def get(self, key_id: str) -> KeyRecord | None: ...

    def by_prefix(self, prefix: str) -> list[KeyRecord]: ...

    def list(self) -> list[KeyRecord]: ...

    def find(self, name_or_prefix: str) -> KeyRecord | None:
        """The key with this name, else the one key with this prefix."""

    def revoke(self, name_or_prefix: str, when: float) -> KeyRecord:
        """Mark a key revoked (``AuthError`` if there is none); returns the updated record."""

    def record_usage(self, deltas: dict[str, UsageDelta]) -> dict[str, dict[str, WindowUsage]]:
        """Add each key's delta to its windows (rolling expired ones), set ``last_used_at``;
        returns the updated windows of those keys."""

    def usage(self, key_id: str) -> dict[str, WindowUsage]: ...

    def close(self) -> None: ...


def open_store(settings: object) -> KeyStore:
    """The store ``settings`` name: PostgreSQL for ``database_url``, else SQLite under home."""
    url = getattr(settings, "database_url", None)
    if url:
        from embedserve.auth.postgres_store import PostgresKeyStore

        return PostgresKeyStore(url)
    from embedserve.auth.sqlite_store import SQLiteKeyStore

    return SQLiteKeyStore(getattr(settings, "home"))  # noqa: B009
