"""Keys and usage in PostgreSQL (``EMBEDSERVE_DATABASE_URL``): many server processes, one meter.

Same protocol as the SQLite store. Usage windows roll and add in one ``INSERT ... ON CONFLICT DO
UPDATE`` per window, so processes metering the same key at once compose without a lost update and
without a read-modify-write round trip. Tables are prefixed ``auth_`` so they can share a database
with the collections backend. Needs ``psycopg`` (the ``postgres`` extra).
"""

from __future__ import annotations

import threading

from embedserve.auth.sql_keys import SQLKeyStore
from embedserve.auth.store import WINDOWS, UsageDelta, WindowUsage
from embedserve.errors import StoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS auth_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    plan TEXT NOT NULL,
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL,
    models TEXT NOT NULL DEFAULT '[]',
    created_at DOUBLE PRECISION NOT NULL,
    last_used_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS auth_keys_prefix ON auth_keys(prefix);
CREATE TABLE IF NOT EXISTS auth_usage (
    key_id TEXT NOT NULL REFERENCES auth_keys(id),
    window_name TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    requests BIGINT NOT NULL,
    inputs BIGINT NOT NULL,
    tokens BIGINT NOT NULL,
    compute_seconds DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (key_id, window_name)
);
"""

# a delta that starts after the stored window ends opens a new window; else it adds
_ROLL = """
INSERT INTO auth_usage AS u VALUES (%(key_id)s, %(window)s, %(first_at)s, %(requests)s,
    %(inputs)s, %(tokens)s, %(seconds)s)
ON CONFLICT (key_id, window_name) DO UPDATE SET
    started_at = CASE WHEN EXCLUDED.started_at >= u.started_at + %(length)s
        THEN EXCLUDED.started_at ELSE u.started_at END,
    requests = CASE WHEN EXCLUDED.started_at >= u.started_at + %(length)s
        THEN EXCLUDED.requests ELSE u.requests + EXCLUDED.requests END,
    inputs = CASE WHEN EXCLUDED.started_at >= u.started_at + %(length)s
        THEN EXCLUDED.inputs ELSE u.inputs + EXCLUDED.inputs END,
    tokens = CASE WHEN EXCLUDED.started_at >= u.started_at + %(length)s
        THEN EXCLUDED.tokens ELSE u.tokens + EXCLUDED.tokens END,
    compute_seconds = CASE WHEN EXCLUDED.started_at >= u.started_at + %(length)s
        THEN EXCLUDED.compute_seconds ELSE u.compute_seconds + EXCLUDED.compute_seconds END
RETURNING window_name, started_at, requests, inputs, tokens, compute_seconds
"""


class PostgresKeyStore(SQLKeyStore):
    keys_table = "auth_keys"
    usage_table = "auth_usage"
    window_column = "window_name"
    p = "%s"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise StoreError(
                "EMBEDSERVE_DATABASE_URL needs psycopg: pip install 'embedserve[postgres]'"
            ) from None
        self._duplicate = psycopg.errors.UniqueViolation
        try:
            self._db = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the key database: {exc}".splitlines()[0]) from None
        self._lock = threading.Lock()
        with self._lock, self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(7463029)")  # one creator at a time
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)

    def record_usage(self, deltas: dict[str, UsageDelta]) -> dict[str, dict[str, WindowUsage]]:
        out: dict[str, dict[str, WindowUsage]] = {}
        with self._lock, self._db.transaction():
            for key_id, d in deltas.items():
                windows = {}
                for window, length in WINDOWS.items():
                    row = self._db.execute(
                        _ROLL,
                        {
                            "key_id": key_id,
                            "window": window,
                            "first_at": d.first_at,
                            "requests": d.requests,
                            "inputs": d.inputs,
                            "tokens": d.tokens,
                            "seconds": d.compute_seconds,
                            "length": length,
                        },
                    ).fetchone()
                    assert row is not None  # RETURNING always yields the row it wrote
                    windows[window] = WindowUsage(*row)
                self._db.execute(
                    "UPDATE auth_keys SET last_used_at = GREATEST(COALESCE(last_used_at, 0), %s) "
                    "WHERE id = %s",
                    (d.last_at, key_id),
                )
                out[key_id] = windows
        return out
