"""The PostgreSQL + pgvector test server (tests/pgkit.py) itself: it starts, has pgvector, and
each test's database is its own."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.postgres


def test_server_runs_pgvector_with_hnsw(pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.info.host == "127.0.0.1"
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        assert version.fetchone() is not None
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, v vector(3))")
        conn.execute("INSERT INTO items VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[0.9,0.1,0]')")
        conn.execute("CREATE INDEX ON items USING hnsw (v vector_cosine_ops)")
        rows = conn.execute("SELECT id FROM items ORDER BY v <=> '[1,0,0]' LIMIT 2").fetchall()
        assert [r[0] for r in rows] == [1, 3]


def test_each_test_gets_a_fresh_database(pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'items'"
        ).fetchone()
        assert tables == (0,)
