"""Documents that bring their own ``embedding`` (Chroma's ``embeddings=``), and empty records."""

from __future__ import annotations

import numpy as np
import pytest

from embedserve.config import Settings
from embedserve.errors import InvalidInput
from embedserve.index.collection import Collection

from .conftest import CountingEncoder, make_encoder


def test_own_vectors_are_stored_as_given_and_found_by_model_queries(
    settings: Settings, encoder: CountingEncoder
) -> None:
    col = Collection.open("c", settings=settings, encoder=encoder)
    # vectors from "elsewhere": here the same model's, scaled (stored as given, compared by cosine)
    texts = ["the cat sat on the mat", "stock markets fell sharply", "a recipe for bread"]
    vecs = make_encoder().encode(texts, normalize=True) * 3.0
    encoder.encoded.clear()
    r = col.add([{"id": f"d{i}", "text": t, "embedding": v.tolist()} for i, (t, v) in enumerate(zip(texts, vecs))]
                + [{"id": "plain", "text": "an ordinary document about bread ovens"}])
    assert (r.added, r.chunks) == (4, 4)
    assert encoder.encoded == ["an ordinary document about bread ovens"]  # nothing else was embedded
    hit = col.query("stock markets fell sharply", top_k=1)[0]
    assert hit.id == "d1" and hit.score == pytest.approx(1.0, abs=1e-5) and hit.text == texts[1]
    # a vector with no text at all is a document too
    col.add([{"id": "bare", "embedding": vecs[2].tolist(), "metadata": {"k": 1}}])
    bare = col.query("a recipe for bread", top_k=2, where={"k": 1})[0]
    assert bare.id == "bare" and bare.text == "" and bare.score == pytest.approx(1.0, abs=1e-5)
    # the same vector again is unchanged; another one replaces it
    assert col.add([{"id": "d1", "text": texts[1], "embedding": vecs[1].tolist()}]).unchanged == 1
    assert col.add([{"id": "d1", "text": texts[1], "embedding": vecs[0].tolist()}]).updated == 1
    assert col.query("the cat sat on the mat", top_k=2)[1].id == "d1"
    # readers in a fresh process see the vectors from the segment files
    again = Collection.open("c", settings=settings, encoder=make_encoder())
    assert again.query("stock markets fell sharply", top_k=1)[0].id != "d1"


def test_all_own_vectors_need_no_model(settings: Settings, encoder: CountingEncoder) -> None:
    Collection.open("c", settings=settings, encoder=encoder).close()

    def no_model(model: str, s: Settings) -> CountingEncoder:
        raise AssertionError("the model was loaded")

    col = Collection.open("c", settings=settings, encoder_factory=no_model)
    v = np.zeros(32, np.float32)
    v[3] = 1
    assert col.add([{"id": "a", "embedding": v.tolist()}]).added == 1
    assert col.search_vectors(v[None, :], 1)[0][0].id == "a"


@pytest.mark.parametrize(
    ("embedding", "message"),
    [
        ([0.1] * 31, "has 31 values; this collection's vectors have 32"),
        ([0.1] * 31 + [float("nan")], r"'embedding'\[31\] is nan"),
        ([0.1] * 31 + [float("inf")], "values must be finite"),
        ([0.0] * 32, "all zeros"),
        ([0.1] * 31 + ["x"], r"'embedding'\[31\] is not a number"),
        ([0.1] * 31 + [True], "is not a number"),
        ([1e39] * 32, "overflows float32"),
        ([], "non-empty list"),
        ("0.1,0.2", "must be a list of numbers"),
    ],
)
def test_bad_own_vectors_name_the_problem(
    settings: Settings, encoder: CountingEncoder, embedding: object, message: str
) -> None:
    col = Collection.open("c", settings=settings, encoder=encoder)
    with pytest.raises(InvalidInput, match=message):
        col.add([{"id": "ok", "text": "fine"}, {"id": "bad", "text": "t", "embedding": embedding}])
    assert col.count() == 0  # checked before anything is written


def test_empty_records_are_skipped_and_named(settings: Settings, encoder: CountingEncoder) -> None:
    col = Collection.open("c", settings=settings, encoder=encoder)
    docs = [{"id": str(i), "text": f"text {i}"} for i in range(5)]
    docs[2] = {"id": "2", "text": "", "metadata": {"title": "no abstract"}}
    docs[4] = {"id": "4", "text": "   "}
    r = col.add(docs, batch_size=2)
    assert (r.documents, r.added, r.empty, r.empty_ids) == (5, 3, 2, ["2", "4"])
    assert sorted(d.id for d in col.get([str(i) for i in range(5)])) == ["0", "1", "3"]
    assert r.to_dict()["empty_ids"] == ["2", "4"]
