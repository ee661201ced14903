"""The eval logic on tiny hand-made data whose answers are known: Spearman wiring, nDCG@10 ranking,
the texts each task encodes, comparisons (deltas, vector cosine, tolerance)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from embedserve.embedder import Embedder
from embedserve.engine.fake import FakeEngine
from embedserve.eval.formats import RetrievalData
from embedserve.eval.quality import (
    TOLERANCE,
    EvalData,
    ModelQuality,
    compare,
    encode_unit,
    evaluate,
    retrieval_scores,
    stsb_spearman,
    vector_agreement,
)
from embedserve.eval.tasks import StsData


class DictEncoder:
    """Hand-made vectors per text; records every call."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([self.table[t] for t in texts], dtype=np.float32)


def fake_encoder() -> Embedder:
    return Embedder.from_engine(FakeEngine())


# cosine with "a b c d" falls as fewer words are shared, and the gold scores fall with it
STSB = [
    ("a b c d", "a b c d", 5.0),
    ("a b c d", "a b c x", 3.5),
    ("a b c d", "a b x y", 2.0),
    ("a b c d", "p q r s", 0.0),
]


def sts(pairs: list[tuple[str, str, float]]) -> EvalData:
    return EvalData([StsData("stsb", pairs)])


def retrieval(
    docs: dict[str, str], queries: dict[str, str], rel: dict[str, set[str]]
) -> RetrievalData:
    return RetrievalData("cisi", docs, queries, {q: dict.fromkeys(ds, 1) for q, ds in rel.items()})


def test_stsb_spearman_with_the_fake_engine_follows_shared_words() -> None:
    data = sts(STSB)
    result = evaluate("fake", fake_encoder(), data)
    assert result.scores["stsb"] == pytest.approx(1.0)
    # reversing the gold order reverses the correlation: the gold scores are really used
    reversed_data = sts([(a, b, -g) for a, b, g in STSB])
    assert evaluate("fake", fake_encoder(), reversed_data).scores["stsb"] == pytest.approx(-1.0)


def test_stsb_encodes_each_unique_sentence_once() -> None:
    data = sts(STSB)
    texts = data.texts(data.tasks[0])
    assert texts == ["a b c d", "a b c x", "a b x y", "p q r s"]
    enc = DictEncoder({t: [1.0, float(i)] for i, t in enumerate(texts)})
    result = evaluate("dict", enc, data)
    assert [t for call in enc.calls for t in call] == texts
    assert result.vectors["stsb"].shape == (4, 2)


def test_stsb_spearman_uses_cosine_of_unit_vectors() -> None:
    # the same direction at different lengths must count as cosine 1
    vectors = {
        "x": np.array([1.0, 0.0]),
        "x2": np.array([5.0, 0.0]) / 5.0,
        "y": np.array([0.6, 0.8]),
        "z": np.array([0.0, 1.0]),
    }
    pairs = [("x", "x2", 4.0), ("x", "y", 2.0), ("x", "z", 1.0)]
    assert stsb_spearman(pairs, vectors) == pytest.approx(1.0)


CISI = retrieval(
    {"1": "d1", "2": "d2", "3": "d3", "4": "d4"},
    {"1": "q1", "2": "q2", "3": "unjudged query"},
    {"1": {"1"}, "2": {"4", "9"}},  # doc 9 is judged relevant but absent: it still counts
)
# q1 is closest to d1 (rank 1); q2 ranks d2, d4, d3, d1
VECS = {
    "d1": [1.0, 0.0, 0.0],
    "d2": [0.0, 1.0, 0.0],
    "d3": [0.0, 0.5, 1.0],
    "d4": [0.0, 1.0, 0.4],
    "q1": [1.0, 0.1, 0.0],
    "q2": [0.0, 1.0, 0.1],
    "unjudged query": [0.0, 0.0, 1.0],
}


def test_cisi_ndcg_on_known_ranks() -> None:
    enc = DictEncoder(VECS)
    result = evaluate("dict", enc, EvalData([CISI]))
    # q1: relevant at rank 1 -> 1.0; q2: d4 at rank 2 of two relevant -> (1/log2 3) / (1 + 1/log2 3)
    q2 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert result.scores["cisi"] == pytest.approx((1.0 + q2) / 2)
    m = result.metrics["cisi"]
    assert m["ndcg@10"] == result.scores["cisi"]
    assert m["mrr@10"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["recall@100"] == pytest.approx((1.0 + 0.5) / 2)  # doc 9 is never retrieved
    assert m["map@100"] == pytest.approx((1.0 + (1 / 2) / 2) / 2)
    encoded = [t for call in enc.calls for t in call]
    assert encoded == ["d1", "d2", "d3", "d4", "q1", "q2"]  # unjudged queries are not encoded


def test_retrieval_ties_are_broken_by_document_id_descending() -> None:
    docs = np.eye(4, dtype=np.float32)
    # q1 -> d4 first, then the tied d3 d2 d1 (trec_eval: id descending): d1 at rank 4
    # q2 -> d3 first, then d4 d2 d1: d4 at rank 2 of two relevant
    queries = np.array([[0, 0, 0, 1], [0, 0, 1, 0]], dtype=np.float32)
    ideal2 = 1 + 1 / math.log2(3)
    expected = (1 / math.log2(5) + (1 / math.log2(3)) / ideal2) / 2
    assert retrieval_scores(CISI, docs, queries)["ndcg@10"] == pytest.approx(expected)
    queries = np.array([[1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float32)
    got = retrieval_scores(CISI, docs, queries)
    assert got["ndcg@10"] == pytest.approx((1.0 + 1 / ideal2) / 2)
    assert got["mrr@10"] == pytest.approx(1.0)


def test_cisi_with_the_fake_engine_finds_word_overlap() -> None:
    cisi = retrieval(
        {
            "1": "cats purr softly at night",
            "2": "dogs bark loudly",
            "3": "fish swim in rivers",
        },
        {"1": "why do cats purr", "2": "loud dogs bark"},
        {"1": {"1"}, "2": {"2"}},
    )
    assert evaluate("fake", fake_encoder(), EvalData([cisi])).scores["cisi"] == pytest.approx(1.0)
    chunked = evaluate("fake", fake_encoder(), EvalData([cisi]), chunked=True)
    assert chunked.metrics["cisi"]["ndcg@10"] == pytest.approx(1.0)


def test_encode_unit_chunks_reports_progress_and_normalises() -> None:
    texts = [f"text number {i}" for i in range(600)]
    seen: list[int] = []
    vecs = encode_unit(fake_encoder(), texts, progress=seen.append)
    assert seen == [256, 256, 88]
    assert vecs.shape == (600, 32)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)


def test_compare_same_model_agrees_fully() -> None:
    data = sts(STSB)
    a = evaluate("a", fake_encoder(), data)
    b = evaluate("b", fake_encoder(), data)
    c = compare(b, a)
    assert c.deltas == {"stsb": 0.0}
    assert c.cosine_min == pytest.approx(1.0) and c.cosine_mean == pytest.approx(1.0)
    assert c.within() == {"stsb": True}


def test_compare_deltas_tolerance_and_cosine() -> None:
    base = ModelQuality("exact", {"stsb": 0.8672, "cisi": 0.4193}, vectors={"stsb": np.eye(2)})
    rot = np.array([[1.0, 0.0], [0.6, 0.8]])  # second row turned: cosine 0.8 with [0, 1]
    q = ModelQuality("int8", {"stsb": 0.8672 - 0.002, "cisi": 0.4193 - 0.006}, vectors={"stsb": rot})
    c = compare(q, base)
    assert c.deltas["stsb"] == pytest.approx(-0.002)
    assert c.deltas["cisi"] == pytest.approx(-0.006)
    assert c.within() == {"stsb": True, "cisi": False}  # 0.006 > the 0.005 CISI tolerance
    assert TOLERANCE == {"stsb": 0.003, "cisi": 0.005}
    assert c.cosine_min == pytest.approx(0.8) and c.cosine_mean == pytest.approx(0.9)


def test_compare_different_dimensions_has_no_cosine() -> None:
    a = ModelQuality("a", {"stsb": 0.5}, vectors={"stsb": np.ones((3, 4))})
    b = ModelQuality("b", {"stsb": 0.4}, vectors={"stsb": np.ones((3, 8))})
    c = compare(b, a)
    assert c.deltas["stsb"] == pytest.approx(-0.1)
    assert math.isnan(c.cosine_min)


def test_vector_agreement_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        vector_agreement(np.ones((2, 3)), np.ones((3, 3)))


def test_eval_data_load_from_a_folder(tmp_path: Path) -> None:
    (tmp_path / "stsb").mkdir()
    (tmp_path / "stsb" / "stsb-en-dev.csv").write_text('a b,a b,5.0\n"a, b",c d,1.0\n')
    (tmp_path / "cisi").mkdir()
    (tmp_path / "cisi" / "CISI.ALL").write_text(
        ".X\n.I 1\n.T\nTitle\n.W\nsome  text\n.I 2\n.W\nmore\n"
    )
    (tmp_path / "cisi" / "CISI.QRY").write_text(".I 1\n.W\nquery one\n.I 2\n.W\nnot judged\n")
    (tmp_path / "cisi" / "CISI.REL").write_text("1 2 0 0.0\n")
    data = EvalData.load(["stsb", "cisi"], tmp_path)
    assert data.names == ["stsb", "cisi"]
    stsb, cisi = data.tasks
    assert data.texts(stsb) == ["a b", "a, b", "c d"]
    assert data.texts(cisi) == ["Title some text", "more", "query one"]
    assert data.size() == 6
    assert EvalData.load(["cisi"], tmp_path).names == ["cisi"]
