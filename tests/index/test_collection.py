from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from embedserve.config import Settings
from embedserve.errors import CollectionError, CollectionNotFound, InvalidInput
from embedserve.index.collection import Collection
from embedserve.index.search import SearchConfig
from embedserve.index.sqlite_store import MIGRATIONS

from .conftest import CountingEncoder, make_encoder

DOCS = [
    {"id": "cat", "text": "the cat sat on the mat and purred", "metadata": {"animal": "cat", "legs": 4}},
    {"id": "dog", "text": "a dog barked at the mailman all day", "metadata": {"animal": "dog", "legs": 4}},
    {"id": "bird", "text": "small birds sing in the morning trees", "metadata": {"animal": "bird", "legs": 2}},
]


def test_add_query_and_hit_shape(settings: Settings, encoder: CountingEncoder) -> None:
    col = Collection.open("pets", settings=settings, encoder=encoder)
    r = col.add(DOCS)
    assert (r.documents, r.added, r.chunks) == (3, 3, 3)
    hits = col.query("the cat on the mat", top_k=2)
    assert [h.id for h in hits][0] == "cat"
    h = hits[0].to_dict()
    assert set(h) == {"id", "score", "text", "metadata", "chunk"}
    assert h["text"] == DOCS[0]["text"] and h["metadata"] == {"animal": "cat", "legs": 4}
    assert h["chunk"] == {"index": 0, "start": 0, "end": len(DOCS[0]["text"])}
    assert hits[0].score > hits[1].score
    many = col.query(["cat mat", "birds sing"], top_k=1)
    assert [[h.id for h in hs] for hs in many] == [["cat"], ["bird"]]
    assert col.count() == 3 and col.info().documents == 3


def test_where_filters_and_bad_filter(settings: Settings, encoder: CountingEncoder) -> None:
    col = Collection.open("pets", settings=settings, encoder=encoder)
    col.add(DOCS)
    hits = col.query("the cat on the mat", top_k=3, where={"legs": {"$lt": 4}})
    assert [h.id for h in hits] == ["bird"]
    hits = col.query("cat", top_k=3, where={"$or": [{"animal": "dog"}, {"animal": "bird"}]})
    assert {h.id for h in hits} == {"dog", "bird"}
    before = len(encoder.encoded)
    with pytest.raises(CollectionError, match="unknown operator"):
        col.query("cat", where={"legs": {"$bigger": 1}})
    assert len(encoder.encoded) == before  # rejected before embedding


def test_unchanged_text_is_not_embedded_again(settings: Settings, encoder: CountingEncoder) -> None:
    col = Collection.open("pets", settings=settings, encoder=encoder)
    col.add(DOCS)
    n = len(encoder.encoded)
    r = col.add([{**DOCS[0], "metadata": {"animal": "cat", "legs": 3}}, DOCS[1]])
    assert (r.unchanged, r.added, r.updated, r.chunks) == (2, 0, 0, 0)
    assert len(encoder.encoded) == n
    assert col.get(["cat"])[0].metadata == {"animal": "cat", "legs": 3}
    r = col.add([{"id": "dog", "text": "a wolf howled at the moon"}])
    assert (r.updated, r.chunks) == (1, 1)
    assert encoder.encoded[-1] == "a wolf howled at the moon"
    assert col.query("wolf howled moon", top_k=1)[0].id == "dog"
    assert col.count() == 3


def test_default_id_is_content_hash(settings: Settings, encoder: CountingEncoder) -> None:
    col = Collection.open("c", settings=settings, encoder=encoder)
    col.add(["same text", "same text", "other text"])
    assert col.count() == 2
    (hit,) = col.query("same text", top_k=1)
    assert len(hit.id) == 16 and int(hit.id, 16) >= 0


def test_delete_by_ids_and_where(settings: Settings, encoder: CountingEncoder) -> None:
    col = Collection.open("pets", settings=settings, encoder=encoder)
    col.add(DOCS)
    assert col.delete(ids=["cat", "nope"]) == 1
    assert col.delete(where={"legs": 2}) == 1
    assert [h.id for h in col.query("anything at all", top_k=5)] == ["dog"]
    with pytest.raises(CollectionError):
        col.delete()
    with pytest.raises(CollectionError, match="bad filter"):
        col.delete(where={"$nope": 1})


def test_bad_documents(settings: Settings, encoder: CountingEncoder) -> None:
    col = Collection.open("c", settings=settings, encoder=encoder)
    for bad in [{"text": "t", "metadata": [1]}, {"text": "t", "extra": 1}, 3, {"text": 5}, {"id": True, "text": "t"}]:
        with pytest.raises(InvalidInput):
            col.add([bad])
    assert col.count() == 0
    r = col.add([{"text": ""}, {"id": "x"}, {"id": "y", "text": "  \n"}, {"id": "ok", "text": "fine"}])
    assert (r.documents, r.added, r.empty, r.empty_ids) == (4, 1, 3, ["#0", "x", "y"])
    assert col.count() == 1


def test_model_is_pinned(settings: Settings, encoder: CountingEncoder) -> None:
    Collection.open("c", settings=settings, encoder=encoder).add(DOCS)
    with pytest.raises(CollectionError, match="uses model fake:latest"):
        Collection.open("c", settings=settings, model="all-minilm")
    with pytest.raises(CollectionError, match="fake:latest"):
        Collection.open("c", settings=settings, encoder=make_encoder(name="other:latest", digest="e" * 64))
    with pytest.raises(CollectionError, match="other weights"):
        Collection.open("c", settings=settings, encoder=make_encoder(digest="f" * 64))
    # the same model by its short name is fine
    col = Collection.open("c", settings=settings, encoder=make_encoder(name="fake"), model="fake")
    assert col.count() == 3


def test_open_missing_list_drop(settings: Settings, encoder: CountingEncoder) -> None:
    assert Collection.list(settings) == []
    with pytest.raises(CollectionNotFound):
        Collection.open("nope", settings=settings, create=False)
    with pytest.raises(CollectionError, match="invalid collection name"):
        Collection.open("../x", settings=settings, encoder=encoder)
    Collection.open("a", settings=settings, encoder=encoder).add(DOCS[:1])
    Collection.open("b", settings=settings, encoder=encoder, chunk_tokens=0)
    infos = {i.name: i for i in Collection.list(settings)}
    assert infos["a"].documents == 1 and infos["a"].chunk_tokens == 62 and infos["b"].chunk_tokens == 0
    Collection.drop("a", settings)
    assert [i.name for i in Collection.list(settings)] == ["b"]
    with pytest.raises(CollectionNotFound):
        Collection.drop("a", settings)


def test_chunk_settings_are_fixed(settings: Settings, encoder: CountingEncoder) -> None:
    Collection.open("c", settings=settings, encoder=encoder, chunk_tokens=20, overlap=5)
    with pytest.raises(CollectionError, match="chunk_tokens=20"):
        Collection.open("c", settings=settings, encoder=encoder, chunk_tokens=30)
    with pytest.raises(CollectionError, match="window"):
        Collection.open("d", settings=settings, encoder=encoder, chunk_tokens=63)


def test_migrations_table_and_wal(settings: Settings, encoder: CountingEncoder) -> None:
    Collection.open("c", settings=settings, encoder=encoder)
    db = sqlite3.connect(settings.collections_dir / "collections.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [r[0] for r in db.execute("SELECT name FROM _migrations")] == [m[0] for m in MIGRATIONS]
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    db.close()
    Collection.open("c", settings=settings, encoder=encoder)  # reopening does not re-run them


def need_usearch() -> None:
    # never `importorskip("usearch")`: usearch imported before onnxruntime segfaults it (see ann.py)
    from embedserve.index.ann import available

    if not available():
        pytest.skip("usearch is not installed (the 'ann' extra)")


def filler(rng: np.random.Generator, n: int) -> str:
    return " ".join(f"filler{int(i)}" for i in rng.integers(0, 5000, n))


def test_planted_passage_beyond_the_window(settings: Settings) -> None:
    enc = make_encoder(max_tokens=256, dim=384)  # all-minilm's window and width
    rng = np.random.default_rng(0)
    planted = (
        "zebra migration across the serengeti river crossing crocodiles wildebeest herd "
        "gazelles follow the rains north into kenya every july grazing grasslands"
    )
    head, tail = filler(rng, 600), filler(rng, 300)
    long_doc = f"{head} {planted} {tail}"
    docs = [{"id": "long", "text": long_doc}] + [{"id": f"d{i}", "text": filler(rng, 200)} for i in range(30)]
    chunked = Collection.open("chunked", settings=settings, encoder=enc)
    truncated = Collection.open("truncated", settings=settings, encoder=enc, chunk_tokens=0)
    chunked.add(docs)
    truncated.add(docs)
    assert chunked.info().chunks > truncated.info().chunks == 31
    q = "zebra wildebeest migration serengeti river crossing crocodiles gazelles rains kenya"
    (top,) = chunked.query(q, top_k=1)
    assert top.id == "long" and top.chunk.index > 0
    assert planted in top.text and top.chunk.start > len(head) // 2
    assert long_doc[top.chunk.start : top.chunk.end] == top.text
    t_hits = truncated.query(q, top_k=31)
    t_long = next(h for h in t_hits if h.id == "long")
    assert t_long.score < top.score / 2  # the truncated vector never saw the passage


def test_strategies_agree_with_exact(settings: Settings, encoder: CountingEncoder) -> None:
    rng = np.random.default_rng(1)
    col = Collection.open("c", settings=settings, encoder=encoder, search=SearchConfig(rescore_min=50))
    col.add([{"id": str(i), "text": filler(rng, 12), "metadata": {"i": i}} for i in range(400)])
    queries = [filler(rng, 4) for _ in range(10)]
    exact = col.query(queries, top_k=10, strategy="exact")
    for strategy in ("binary", "int8", "ann"):
        if strategy == "ann":
            need_usearch()
        got = col.query(queries, top_k=10, strategy=strategy)
        recall = np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(exact, got)])
        assert recall >= 0.8, strategy
        for a, b in zip(exact, got):  # rescored: the scores of shared hits are exact
            sa = {h.id: h.score for h in a}
            for h in b:
                if h.id in sa:
                    assert h.score == pytest.approx(sa[h.id], abs=1e-5)
    filtered = col.query(queries[0], top_k=5, where={"i": {"$lt": 50}}, strategy="binary")
    assert len(filtered) == 5 and all(h.metadata["i"] < 50 for h in filtered)


def test_auto_strategy_thresholds(settings: Settings, encoder: CountingEncoder) -> None:
    col = Collection.open("c", settings=settings, encoder=encoder, search=SearchConfig(quantize_from=5, ann_from=10**9))
    assert col._pick(4, None, "auto") == "exact"
    assert col._pick(5, None, "auto") == "binary"
    assert col._pick(5, np.zeros(5, dtype=bool), "auto") == "exact"  # small filtered subset
    with pytest.raises(CollectionError, match="unknown search strategy"):
        col._pick(5, None, "fast")  # type: ignore[arg-type]


def test_sees_writes_from_another_connection(settings: Settings, encoder: CountingEncoder) -> None:
    reader = Collection.open("c", settings=settings, encoder=encoder)
    writer = Collection.open("c", settings=settings, encoder=encoder)
    writer.add(DOCS[:1])
    assert [h.id for h in reader.query("cat", top_k=5)] == ["cat"]
    writer.add(DOCS[1:])
    assert len(reader.query("cat", top_k=5)) == 3  # the cached matrix was refreshed
    writer.delete(ids=["cat"])
    assert "cat" not in {h.id for h in reader.query("cat", top_k=5)}


def test_ann_index_persists_and_syncs(settings: Settings, encoder: CountingEncoder) -> None:
    need_usearch()
    rng = np.random.default_rng(2)
    cfg = SearchConfig(strategy="ann")
    col = Collection.open("c", settings=settings, encoder=encoder, search=cfg)
    col.add([{"id": str(i), "text": filler(rng, 10)} for i in range(100)])
    col.query("filler1", top_k=3)
    files = list(settings.collections_dir.glob("ann-*.usearch"))
    assert len(files) == 1
    col.delete(ids=[str(i) for i in range(50)])
    col.add([{"id": "new", "text": "completely novel words here"}])
    hits = col.query("completely novel words here", top_k=60)
    assert hits[0].id == "new" and len(hits) == 51
    assert not {h.id for h in hits} & {str(i) for i in range(50)}
    again = Collection.open("c", settings=settings, encoder=encoder, search=cfg)
    assert again.query("completely novel words here", top_k=1)[0].id == "new"
    Collection.drop("c", settings)
    assert not list(settings.collections_dir.glob("ann-*"))


def test_ann_then_onnxruntime_in_one_process() -> None:
    """usearch imported before onnxruntime segfaults the later import; ann.py orders them."""
    import subprocess
    import sys

    need_usearch()
    code = "from embedserve.index.ann import available; assert available(); import onnxruntime; print('ok')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-500:]
