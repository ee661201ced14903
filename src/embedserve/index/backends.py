"""Which :class:`~embedserve.index.store.CollectionStore` a collection lives in, from the settings.

``EMBEDSERVE_DATABASE_URL=postgresql://...`` (``Settings.database_url``): PostgreSQL + pgvector
(``postgres_store.py``), shared by every server pointed at it. Otherwise the SQLite database under
``Settings.collections_dir``. Chosen here and nowhere else.
"""

from __future__ import annotations

from embedserve.config import Settings
from embedserve.index.store import CollectionStore


def _postgres_url(settings: Settings) -> str | None:
    url = getattr(settings, "database_url", None)
    if url and url.split("://", 1)[0] in ("postgresql", "postgres"):
        return str(url)
    return None


def open_store(settings: Settings) -> CollectionStore:
    url = _postgres_url(settings)
    if url is not None:
        from embedserve.index.postgres_store import PostgresStore

        return PostgresStore(url)
    from embedserve.index.sqlite_store import SQLiteStore

    return SQLiteStore(settings.collections_dir)


def store_exists(settings: Settings) -> bool:
    """Whether there is anything to list yet (without creating an empty database)."""
    if _postgres_url(settings) is not None:
        return True
    from embedserve.index.sqlite_store import DB_NAME

    return (settings.collections_dir / DB_NAME).exists()
