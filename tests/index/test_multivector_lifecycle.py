"""The token file of a collection in multivector mode follows the collection's lifecycle: drop,
delete, update to fewer chunks, a crash between the dense and the token write, a file left by
another collection that had the same id. Backend-neutral (run again on PostgreSQL in
test_postgres_backend.py)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from embedserve.config import Settings
from embedserve.errors import CollectionError
from embedserve.index import multivector
from embedserve.index.collection import Collection
from embedserve.late_interaction import maxsim_batch

from .conftest import make_encoder

DOCS = [
    {"id": "sky", "text": "the sky is blue because air scatters blue light", "metadata": {"k": 1}},
    {"id": "dog", "text": "a dog runs fast in the park at night", "metadata": {"k": 2}},
    {"id": "music", "text": "the man plays the guitar and the music is loud", "metadata": {"k": 2}},
]
LONG = " ".join(f"word{i} sky blue" for i in range(20))  # 60 tokens: several 8-token chunks


def _token_files(settings: Settings) -> list[str]:
    d = settings.collections_dir
    return sorted(p.name for p in d.glob("tokens-*")) if d.exists() else []


def _rows(col: Collection) -> int:
    store = multivector.store_for(col)
    assert store is not None
    return int(store.stats()["chunks"])


def test_drop_removes_the_token_file(settings: Settings) -> None:
    with Collection.open("mvdrop", settings=settings, encoder=make_encoder()) as col:
        multivector.enable(col, "int8")
        col.add(DOCS)
        col.query("blue sky", top_k=2, rerank="maxsim", candidates=3)
        assert _token_files(settings)  # the file and its WAL
    Collection.drop("mvdrop", settings)
    assert _token_files(settings) == []
    with Collection.open("mvdrop", settings=settings, encoder=make_encoder()) as col:
        col.add(DOCS)
        with pytest.raises(CollectionError, match="not in multivector mode"):
            col.query("blue sky", rerank="maxsim")


def test_a_token_file_removed_by_another_process_turns_the_mode_off(settings: Settings) -> None:
    with Collection.open("mvgone", settings=settings, encoder=make_encoder()) as col:
        multivector.enable(col, "int8")
        col.add(DOCS)
        for name in _token_files(settings):  # what a drop in another process does
            os.unlink(settings.collections_dir / name)
        assert multivector.store_for(col) is None
        col.add([{"id": "new", "text": "a new document"}])
        assert _token_files(settings) == []  # not written into a deleted file or a new one


def test_a_file_left_by_another_collection_with_the_same_id_is_discarded(settings: Settings) -> None:
    with Collection.open("mvold", settings=settings, encoder=make_encoder()) as old, \
            Collection.open("plain", settings=settings, encoder=make_encoder()) as plain:
        multivector.enable(old, "binary")
        old.add(DOCS)
        old.query("blue sky", rerank="maxsim", candidates=3)  # rows written
        plain.add(DOCS)
        # as if a collection of another database (new SQLite file, other PostgreSQL database)
        # with plain's id had left its file behind
        stale = multivector.sidecar_path(plain)
        for suffix in ("", "-wal"):
            shutil.copy(f"{multivector.sidecar_path(old)}{suffix}", f"{stale}{suffix}")
        with pytest.raises(CollectionError, match="not in multivector mode"):
            plain.query("blue sky", rerank="maxsim")
        assert not stale.exists()
        assert multivector.enable(plain, "int8").codec == "int8"  # a fresh file, its own codec
        assert _rows(plain) == 0


def test_deleting_documents_deletes_their_token_rows(settings: Settings) -> None:
    with Collection.open("mvdel", settings=settings, encoder=make_encoder()) as col:
        multivector.enable(col, "int8")
        col.add(DOCS)
        assert _rows(col) == 3
        assert col.delete(["sky"]) == 1
        assert _rows(col) == 2
        assert col.delete(where={"k": 2}) == 2
        assert _rows(col) == 0


def test_a_text_that_shrinks_to_fewer_chunks_leaves_no_rows(settings: Settings) -> None:
    with Collection.open("mvshrink", settings=settings, encoder=make_encoder(), chunk_tokens=8,
                         overlap=0) as col:
        multivector.enable(col, "int8")
        col.add([{"id": "long", "text": LONG}])
        many = col.info().chunks
        assert many > 2 and _rows(col) == many
        col.add([{"id": "long", "text": "short now"}])
        assert col.info().chunks == 1 and _rows(col) == 1


def test_a_crash_between_the_dense_and_the_token_write(settings: Settings,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    enc = make_encoder()
    with Collection.open("mvcrash", settings=settings, encoder=enc) as col:
        multivector.enable(col, "float32")
        col.add(DOCS)

        def crash(*a: object, **k: object) -> None:
            raise OSError("killed")

        monkeypatch.setattr(multivector.TokenStore, "replace", crash)  # the token write dies
        changed = {"id": "dog", "text": "the blue sky at night"}
        with pytest.raises(OSError, match="killed"):
            col.add([changed, {"id": "new", "text": "blue light in the sky"}])
        monkeypatch.undo()
        assert {d.id for d in col.get(["dog", "new"])} == {"dog", "new"}  # the dense write is in
        hits = col.query("blue sky", top_k=4, rerank="maxsim", candidates=4)
        q = enc.encode(["blue sky"], output="token", role="query")[0]
        texts = {d["id"]: d["text"] for d in [*DOCS, changed, {"id": "new", "text": "blue light in the sky"}]}
        for h in hits:  # the old rows of "dog" are not used; "new" got its rows on first use
            want = float(maxsim_batch(q, enc.encode([texts[h.id]], output="token"))[0])
            assert h.score == pytest.approx(want, abs=1e-5), h.id
        assert _rows(col) == 4
        # the next write of the document replaces its stale rows
        col.add([{"id": "dog", "text": "a dog again"}])
        assert _rows(col) == 4


def test_documents_with_their_own_vectors_get_tokens_on_first_use(settings: Settings) -> None:
    enc = make_encoder()
    with Collection.open("mvown", settings=settings, encoder=enc) as col:
        multivector.enable(col, "float32")
        col.add(DOCS)
        vec = enc.encode(["anything"])[0]
        col.add([{"id": "sky", "text": "a changed text with its own vector", "embedding": vec.tolist()}])
        assert _rows(col) == 2  # the old rows of "sky" are gone
        hits = col.query("changed text", top_k=3, rerank="maxsim", candidates=3)
        sky = next(h for h in hits if h.id == "sky")
        q = enc.encode(["changed text"], output="token", role="query")[0]
        want = maxsim_batch(q, enc.encode(["a changed text with its own vector"], output="token"))[0]
        assert sky.score == pytest.approx(float(want), abs=1e-5)
        assert np.isfinite([h.score for h in hits]).all()


def test_index_add_ray_stores_token_vectors(settings: Settings) -> None:
    """``index add --ray`` adds through an encoder answering from the job's vectors: the token
    vectors of multivector mode still come from the model."""
    from embedserve.ray.index_fill import Precomputed

    enc = make_encoder()
    with Collection.open("mvray", settings=settings, encoder=enc) as col:
        multivector.enable(col, "float32")
        table = {d["text"]: enc.encode([d["text"]])[0] for d in DOCS}
        col.add(DOCS, encoder=Precomputed(enc, table))
        assert _rows(col) == 3
        hits = col.query("blue sky", top_k=1, rerank="maxsim", candidates=3)
        q = enc.encode(["blue sky"], output="token", role="query")[0]
        want = maxsim_batch(q, enc.encode([d["text"] for d in DOCS], output="token"))
        assert hits[0].score == pytest.approx(float(want.max()), abs=1e-5)


def test_a_multivector_add_runs_the_model_once_per_chunk_for_both_vectors(settings: Settings) -> None:
    enc = make_encoder(max_tokens=10)
    docs = [*DOCS, {"id": "long", "text": LONG}]
    with Collection.open("mvplain", settings=settings, encoder=make_encoder(max_tokens=10)) as plain:
        plain.add(docs)
        want = [(h.id, h.score) for h in plain.query("blue sky", top_k=4)]
    with Collection.open("mvonce", settings=settings, encoder=enc) as col:
        multivector.enable(col, "float32")
        engine = enc.engine
        engine.batches.clear()  # type: ignore[attr-defined]
        added = col.add(docs)
        assert added.chunks > len(docs)  # LONG is several chunks
        assert sum(engine.batches) == added.chunks  # type: ignore[attr-defined]  # one run, not two
        assert [(h.id, h.score) for h in col.query("blue sky", top_k=4)] == want  # the same vectors
        assert _rows(col) == added.chunks
        hits = col.query("blue sky", top_k=4, rerank="maxsim", candidates=4)
        q = enc.encode(["blue sky"], output="token", role="query")[0]
        for h in hits:  # the stored token rows are the chunks' own
            chunk = enc.encode([h.text], output="token")[0]
            assert h.score == pytest.approx(float(maxsim_batch(q, [chunk])[0]), abs=1e-5), h.id
