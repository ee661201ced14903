"""Collections in PostgreSQL + pgvector (EMBEDSERVE_DATABASE_URL), against a real server
(tests/pgkit.py): the same Collection, HTTP and CLI suites as SQLite, run here with the settings
pointing at a fresh database; SQL ``where`` filters checked against the in-process predicate;
the same chunks and rescored results as SQLite; pgvector's HNSW for ``strategy="ann"``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedserve.config import Settings
from embedserve.errors import CollectionError, StoreError
from embedserve.index.collection import Collection
from embedserve.index.search import SearchConfig

from .conftest import make_encoder

# the backend-neutral suites, collected again in this module with ``settings`` below
from .test_cli_index import (  # noqa: F401
    test_add_query_list_delete_rm,
    test_ask_without_llm_shows_context_and_prompt,
    test_user_errors_are_one_line,
)
from .test_collection import (  # noqa: F401
    filler,
    test_add_query_and_hit_shape,
    test_bad_documents,
    test_chunk_settings_are_fixed,
    test_default_id_is_content_hash,
    test_delete_by_ids_and_where,
    test_model_is_pinned,
    test_planted_passage_beyond_the_window,
    test_sees_writes_from_another_connection,
    test_unchanged_text_is_not_embedded_again,
    test_where_filters_and_bad_filter,
)
from .test_filters import DOCS as FILTER_DOCS
from .test_filters import OPERATOR_CASES
from .test_http_collections import (  # noqa: F401
    client,
    test_collection_lifecycle,
    test_documents_create_with_default_model,
    test_errors,
    test_server_and_library_share_the_store,
)
from .test_multivector_lifecycle import (  # noqa: F401
    test_a_crash_between_the_dense_and_the_token_write,
    test_a_file_left_by_another_collection_with_the_same_id_is_discarded,
    test_a_text_that_shrinks_to_fewer_chunks_leaves_no_rows,
    test_deleting_documents_deletes_their_token_rows,
    test_drop_removes_the_token_file,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def settings(tmp_path: Path, pg_url: str) -> Settings:
    return Settings(home=tmp_path / "home", database_url=pg_url)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_factory: dict, pg_url: str) -> Path:
    monkeypatch.setenv("EMBEDSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EMBEDSERVE_DATABASE_URL", pg_url)
    monkeypatch.delenv("EMBEDSERVE_LLM_URL", raising=False)
    monkeypatch.delenv("EMBEDSERVE_LLM_MODEL", raising=False)
    return tmp_path


def test_collections_really_live_in_postgres(settings: Settings, pg_url: str) -> None:
    import psycopg

    col = Collection.open("pg", settings=settings, encoder=make_encoder())
    col.add([{"id": "a", "text": "hello postgres", "metadata": {"k": 1}}])
    assert not (settings.collections_dir / "collections.db").exists()
    with psycopg.connect(pg_url) as conn:
        (n,) = conn.execute("SELECT count(*) FROM collection_chunks").fetchone()  # type: ignore[misc]
        (meta,) = conn.execute("SELECT metadata FROM collection_documents").fetchone()  # type: ignore[misc]
        indexes = [r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname LIKE '%hnsw%'")]
    assert n == 1 and meta == {"k": 1}  # jsonb
    assert indexes == []  # the HNSW index comes with the first ann query
    assert col.query("hello postgres", top_k=1, strategy="ann")[0].id == "a"
    with psycopg.connect(pg_url) as conn:
        indexes = [r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname LIKE '%hnsw%'")]
        conn.execute("SET enable_seqscan = off")  # one row: the planner would scan anyway
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT key FROM collection_chunks WHERE collection_id = %s"
            " ORDER BY embedding::vector(32) <#> %s::vector LIMIT 5", (col._row.id, "[" + ",".join(["0.1"] * 32) + "]"),
        ))
    assert len(indexes) == 1 and "hnsw" in indexes[0] and "vector(32)" in indexes[0]
    assert "collection_chunks_hnsw" in plan  # the query really uses it
    assert [c.name for c in Collection.list(settings)] == ["pg"]


@pytest.mark.parametrize("where,expected", OPERATOR_CASES)
def test_sql_filters_match_the_python_predicate(settings: Settings, where: object, expected: list[int]) -> None:
    col = Collection.open("f", settings=settings, encoder=make_encoder())
    docs = [{"id": str(i), "text": f"document {i}", "metadata": m} for i, m in enumerate(FILTER_DOCS)]
    docs.append({"id": "9", "text": "nulls", "metadata": {"kind": None, "n": 2.5}})
    col.add(docs)
    store = col._store
    got = sorted(int(i) for i in store.ids_where(col._row.id, json.loads(where) if isinstance(where, str) else where))
    assert [i for i in got if i != 9] == expected
    from embedserve.index.filters import compile_where

    pred = compile_where(where)  # type: ignore[arg-type]
    assert pred is not None
    assert (9 in got) == pred(docs[-1]["metadata"])


def test_null_and_float_filters(settings: Settings) -> None:
    col = Collection.open("f", settings=settings, encoder=make_encoder())
    col.add([{"id": "x", "text": "x", "metadata": {"a": None, "f": 0.5, "s": "é"}},
             {"id": "y", "text": "y", "metadata": {"f": 2}}])
    ids = lambda w: sorted(col._store.ids_where(col._row.id, w))
    assert ids({"a": None}) == ["x"] and ids({"a": {"$ne": None}}) == ["y"]
    assert ids({"f": {"$gt": 0.25, "$lt": 1}}) == ["x"] and ids({"f": {"$in": [2.0]}}) == ["y"]
    assert ids({"s": {"$gt": "z"}}) == ["x"]  # code point order: é > z
    with pytest.raises(CollectionError, match="unknown operator"):
        col._store.ids_where(col._row.id, {"a": {"$regex": "x"}})


def test_same_chunks_and_results_as_sqlite(tmp_path: Path, settings: Settings) -> None:
    rng = np.random.default_rng(3)
    docs = [{"id": str(i), "text": filler(rng, int(rng.integers(5, 60))), "metadata": {"i": i, "odd": i % 2 == 1}}
            for i in range(300)]
    queries = [filler(rng, 5) for _ in range(8)]
    cfg = SearchConfig(rescore_min=50)
    pg = Collection.open("same", settings=settings, encoder=make_encoder(max_tokens=24), search=cfg)
    lite = Collection.open("same", settings=Settings(home=tmp_path / "lite"),
                           encoder=make_encoder(max_tokens=24), search=cfg)
    for col in (pg, lite):
        col.add(docs)
    assert pg.info().chunks == lite.info().chunks > len(docs)  # long texts were chunked
    for strategy in ("exact", "int8", "binary"):
        for where in (None, {"odd": True}, {"i": {"$lt": 100}}):
            a = pg.query(queries, top_k=7, where=where, strategy=strategy)
            b = lite.query(queries, top_k=7, where=where, strategy=strategy)
            assert [[h.to_dict() for h in hs] for hs in a] == [[h.to_dict() for h in hs] for hs in b]
    # updates and deletes through both, then the same answers again
    for col in (pg, lite):
        col.add([{"id": "5", "text": "a new text for five"}])
        col.delete(where={"i": {"$gte": 250}})
    a = pg.query(queries, top_k=5, strategy="exact")
    b = lite.query(queries, top_k=5, strategy="exact")
    assert [[h.to_dict() for h in hs] for hs in a] == [[h.to_dict() for h in hs] for hs in b]


def test_hnsw_in_postgres(settings: Settings) -> None:
    rng = np.random.default_rng(5)
    col = Collection.open("ann", settings=settings, encoder=make_encoder(dim=64))
    col.add([{"id": str(i), "text": filler(rng, 10), "metadata": {"i": i}} for i in range(400)])
    queries = [filler(rng, 4) for _ in range(10)]
    exact = col.query(queries, top_k=10, strategy="exact")
    ann = col.query(queries, top_k=10, strategy="ann")
    recall = np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(exact, ann)])
    assert recall >= 0.9
    for a, b in zip(exact, ann):
        sa = {h.id: h.score for h in a}
        for h in b:
            if h.id in sa:
                assert h.score == pytest.approx(sa[h.id], abs=1e-4)
    filtered = col.query(queries[0], top_k=5, where={"i": {"$lt": 40}}, strategy="ann")
    assert len(filtered) == 5 and all(h.metadata["i"] < 40 for h in filtered)
    assert filtered[0].text and filtered[0].chunk.end > filtered[0].chunk.start


def test_two_servers_share_one_database(settings: Settings) -> None:
    writer = Collection.open("shared", settings=settings, encoder=make_encoder())
    reader = Collection.open("shared", settings=settings, encoder=make_encoder())  # its own connection
    writer.add([{"id": "a", "text": "first document"}])
    assert [h.id for h in reader.query("first document", top_k=1)] == ["a"]
    writer.add([{"id": "b", "text": "second document here"}])
    assert reader.query("second document here", top_k=1)[0].id == "b"  # an incremental read
    writer.delete(ids=["a"])
    assert [h.id for h in reader.query("first document", top_k=5)] == ["b"]


def test_unreachable_database_is_one_clear_error(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, database_url="postgresql://nobody:secret@127.0.0.1:1/nothing")
    with pytest.raises(StoreError, match="cannot use the collections database") as info:
        Collection.open("x", settings=s, encoder=make_encoder())
    assert "secret" not in str(info.value)
