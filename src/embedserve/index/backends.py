"""Which :class:`~embedserve.index.store.CollectionStore` a collection lives in, from the settings.

Today: the SQLite database under ``Settings.collections_dir``. Another backend (PostgreSQL +
pgvector) is chosen here and nowhere else.
"""

from __future__ import annotations

from embedserve.config import Settings
from embedserve.index.store import CollectionStore


def open_store(settings: Settings) -> CollectionStore:
    from embedserve.index.sqlite_store import SQLiteStore

    return SQLiteStore(settings.collections_dir)


def store_exists(settings: Settings) -> bool:
    """Whether there is anything to list yet (without creating an empty database)."""
    from embedserve.index.sqlite_store import DB_NAME

    return (settings.collections_dir / DB_NAME).exists()
