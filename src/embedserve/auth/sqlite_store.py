"""Keys and usage in SQLite (WAL) at ``EMBEDSERVE_HOME/auth.db``.

WAL lets the CLI (``keys create``, ``keys usage``) read and write while a server holds the file;
``busy_timeout`` makes concurrent writers wait instead of failing. One connection per store,
guarded by a lock (the server calls it from worker threads).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from embedserve.auth.keys import KeyRecord
from embedserve.auth.store import WINDOWS, UsageDelta, WindowUsage, roll
from embedserve.errors import AuthError

DB_NAME = "auth.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    plan TEXT NOT NULL,
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL,
    models TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    last_used_at REAL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS keys_prefix ON keys(prefix);
CREATE TABLE IF NOT EXISTS usage (
    key_id TEXT NOT NULL REFERENCES keys(id),
    window TEXT NOT NULL,
    started_at REAL NOT NULL,
    requests INTEGER NOT NULL,
    inputs INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    compute_seconds REAL NOT NULL,
    PRIMARY KEY (key_id, window)
);
"""

_COLUMNS = "id, name, plan, prefix, hash, models, created_at, last_used_at, revoked_at"


def _record(row: Any) -> KeyRecord:
    return KeyRecord(
        id=row[0],
        name=row[1],
        plan=row[2],
        prefix=row[3],
        hash=row[4],
        models=tuple(json.loads(row[5] or "[]")),
        created_at=row[6],
        last_used_at=row[7],
        revoked_at=row[8],
    )


class SQLiteKeyStore:
    def __init__(self, home: Path) -> None:
        home = Path(home)
        home.mkdir(parents=True, exist_ok=True)
        self.path = home / DB_NAME
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=30, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def create(self, record: KeyRecord) -> None:
        try:
            with self._lock:
                self._db.execute(
                    f"INSERT INTO keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.id,
                        record.name,
                        record.plan,
                        record.prefix,
                        record.hash,
                        json.dumps(list(record.models)),
                        record.created_at,
                        None,
                        None,
                    ),
                )
        except sqlite3.IntegrityError:
            raise AuthError(f"a key named {record.name!r} already exists") from None

    def get(self, key_id: str) -> KeyRecord | None:
        rows = self._all(f"SELECT {_COLUMNS} FROM keys WHERE id = ?", (key_id,))
        return _record(rows[0]) if rows else None

    def by_prefix(self, prefix: str) -> list[KeyRecord]:
        return [
            _record(r)
            for r in self._all(f"SELECT {_COLUMNS} FROM keys WHERE prefix = ?", (prefix,))
        ]

    def list(self) -> list[KeyRecord]:
        return [_record(r) for r in self._all(f"SELECT {_COLUMNS} FROM keys ORDER BY created_at")]

    def find(self, name_or_prefix: str) -> KeyRecord | None:
        rows = self._all(f"SELECT {_COLUMNS} FROM keys WHERE name = ?", (name_or_prefix,))
        if rows:
            return _record(rows[0])
        matches = self.by_prefix(name_or_prefix)
        return matches[0] if len(matches) == 1 else None

    def revoke(self, name_or_prefix: str, when: float) -> KeyRecord:
        record = self.find(name_or_prefix)
        if record is None:
            raise AuthError(f"no key named {name_or_prefix!r} or with that prefix")
        with self._lock:
            self._db.execute(
                "UPDATE keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
                (when, record.id),
            )
        updated = self.get(record.id)
        assert updated is not None
        return updated

    def _windows(self, key_id: str) -> dict[str, WindowUsage]:
        rows = self._db.execute(
            "SELECT window, started_at, requests, inputs, tokens, compute_seconds FROM usage "
            "WHERE key_id = ?",
            (key_id,),
        ).fetchall()
        return {r[0]: WindowUsage(*r) for r in rows}

    def record_usage(self, deltas: dict[str, UsageDelta]) -> dict[str, dict[str, WindowUsage]]:
        out: dict[str, dict[str, WindowUsage]] = {}
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # read-modify-write under the write lock
            try:
                for key_id, delta in deltas.items():
                    current = self._windows(key_id)
                    for window in WINDOWS:
                        row = roll(current.get(window), window, delta)
                        self._db.execute(
                            "INSERT OR REPLACE INTO usage VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (
                                key_id,
                                window,
                                row.started_at,
                                row.requests,
                                row.inputs,
                                row.tokens,
                                row.compute_seconds,
                            ),
                        )
                        current[window] = row
                    self._db.execute(
                        "UPDATE keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) "
                        "WHERE id = ?",
                        (delta.last_at, key_id),
                    )
                    out[key_id] = current
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return out

    def usage(self, key_id: str) -> dict[str, WindowUsage]:
        with self._lock:
            return self._windows(key_id)

    def close(self) -> None:
        with self._lock:
            self._db.close()
