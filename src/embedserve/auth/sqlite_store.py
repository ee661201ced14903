"""Keys and usage in SQLite (WAL) at ``EMBEDSERVE_HOME/auth.db``.

WAL lets the CLI (``keys create``, ``keys usage``) read and write while a server holds the file;
``busy_timeout`` makes concurrent writers wait instead of failing. One connection per store,
guarded by a lock (the server calls it from worker threads).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from embedserve.auth.sql_keys import SQLKeyStore
from embedserve.auth.store import WINDOWS, UsageDelta, WindowUsage, roll

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


class SQLiteKeyStore(SQLKeyStore):
    keys_table = "keys"
    usage_table = "usage"
    window_column = "window"
    p = "?"

    def __init__(self, home: Path) -> None:
        home = Path(home)
        home.mkdir(parents=True, exist_ok=True)
        self.path = home / DB_NAME
        self._lock = threading.Lock()
        self._duplicate = sqlite3.IntegrityError
        self._db = sqlite3.connect(
            self.path, timeout=30, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)

    def _windows(self, key_id: str) -> dict[str, WindowUsage]:
        """The windows of ``key_id``; the caller holds the lock."""
        rows = self._db.execute(self._usage_sql(), (key_id,)).fetchall()
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
