"""What the SQL key stores share: rows to records, and every statement that reads or changes keys.

The SQLite and PostgreSQL stores differ in their connections, table names, placeholder and in how
they meter usage (a read-modify-write under SQLite's write lock vs one upsert per window); the key
rows and their reads, creation and revocation are the same SQL, written once here. A subclass sets
the class attributes and, in ``__init__``, ``_db`` (a DB-API connection in autocommit mode whose
``execute`` returns a cursor), ``_lock`` and ``_duplicate`` (the driver's unique-violation error).
"""

from __future__ import annotations

import json
import threading
from typing import Any, ClassVar

from embedserve.auth.keys import KeyRecord
from embedserve.auth.store import WindowUsage
from embedserve.errors import AuthError

COLUMNS = "id, name, plan, prefix, hash, models, created_at, last_used_at, revoked_at"


def record(row: Any) -> KeyRecord:
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


class SQLKeyStore:
    keys_table: ClassVar[str]
    usage_table: ClassVar[str]
    window_column: ClassVar[str]  # "window" is reserved in PostgreSQL
    p: ClassVar[str]  # the driver's placeholder: "?" or "%s"

    _db: Any
    _lock: threading.Lock
    _duplicate: type[Exception]

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()  # type: ignore[no-any-return]

    def _select_keys(self, where: str = "", args: tuple[Any, ...] = ()) -> list[KeyRecord]:
        sql = f"SELECT {COLUMNS} FROM {self.keys_table} {where}"
        return [record(r) for r in self._all(sql, args)]

    def create(self, record: KeyRecord) -> None:
        marks = ", ".join([self.p] * 9)
        try:
            with self._lock:
                self._db.execute(
                    f"INSERT INTO {self.keys_table} ({COLUMNS}) VALUES ({marks})",
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
        except self._duplicate:
            raise AuthError(f"a key named {record.name!r} already exists") from None

    def get(self, key_id: str) -> KeyRecord | None:
        rows = self._select_keys(f"WHERE id = {self.p}", (key_id,))
        return rows[0] if rows else None

    def by_prefix(self, prefix: str) -> list[KeyRecord]:
        return self._select_keys(f"WHERE prefix = {self.p}", (prefix,))

    def list(self) -> list[KeyRecord]:
        return self._select_keys("ORDER BY created_at")

    def find(self, name_or_prefix: str) -> KeyRecord | None:
        rows = self._select_keys(f"WHERE name = {self.p}", (name_or_prefix,))
        if rows:
            return rows[0]
        matches = self.by_prefix(name_or_prefix)
        return matches[0] if len(matches) == 1 else None

    def revoke(self, name_or_prefix: str, when: float) -> KeyRecord:
        found = self.find(name_or_prefix)
        if found is None:
            raise AuthError(f"no key named {name_or_prefix!r} or with that prefix")
        p = self.p
        with self._lock:
            self._db.execute(
                f"UPDATE {self.keys_table} SET revoked_at = COALESCE(revoked_at, {p}) "
                f"WHERE id = {p}",
                (when, found.id),
            )
        updated = self.get(found.id)
        assert updated is not None
        return updated

    def _usage_sql(self) -> str:
        return (
            f"SELECT {self.window_column}, started_at, requests, inputs, tokens, compute_seconds "
            f"FROM {self.usage_table} WHERE key_id = {self.p}"
        )

    def usage(self, key_id: str) -> dict[str, WindowUsage]:
        return {r[0]: WindowUsage(*r) for r in self._all(self._usage_sql(), (key_id,))}

    def close(self) -> None:
        with self._lock:
            self._db.close()
