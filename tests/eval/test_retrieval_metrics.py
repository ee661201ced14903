"""Retrieval metrics against hand-worked cases (graded gains, trec_eval's tie order), and against
pytrec_eval itself where it is installed (the ``mteb`` extra brings it)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from embedserve.eval.metrics import (
    evaluate_run,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    rank,
    recall_at_k,
    top_k,
)


def test_rank_sorts_by_score_then_id_descending() -> None:
    assert rank({"a": 0.5, "b": 0.9, "c": 0.5, "d": 0.1}) == ["b", "c", "a", "d"]
    assert rank({"10": 1.0, "9": 1.0, "100": 1.0}) == ["9", "100", "10"]  # string order, as trec


def test_graded_ndcg_by_hand() -> None:
    qrels = {"a": 2, "b": 1, "c": 0, "z": 3}  # z is never retrieved; c judged non-relevant
    ranked = ["b", "c", "a"]
    dcg = 1 / math.log2(2) + 2 / math.log2(4)
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, qrels, 10) == pytest.approx(dcg / idcg)
    # at k=1 the ideal is z (gain 3) alone; we have b (gain 1)
    assert ndcg_at_k(ranked, qrels, 1) == pytest.approx(1 / 3)
    assert ndcg_at_k(ranked, {"c": 0}, 10) == 0.0  # nothing relevant


def test_map_recall_mrr_by_hand() -> None:
    qrels = {"a": 1, "b": 2, "c": 1}
    ranked = ["x", "a", "y", "b", "z"]
    # precision at the hits: 1/2 (a), 2/4 (b); c missing; / 3 relevant
    assert map_at_k(ranked, qrels, 100) == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert map_at_k(ranked, qrels, 3) == pytest.approx((1 / 2) / 3)  # cut before b
    assert recall_at_k(ranked, qrels, 100) == pytest.approx(2 / 3)
    assert recall_at_k(ranked, qrels, 2) == pytest.approx(1 / 3)
    assert mrr_at_k(ranked, qrels, 10) == pytest.approx(1 / 2)
    assert mrr_at_k(ranked, qrels, 1) == 0.0
    with pytest.raises(ValueError):
        ndcg_at_k(ranked, qrels, 0)


def test_evaluate_run_means_over_judged_ranked_queries() -> None:
    run = {"q1": {"a": 0.9, "b": 0.1}, "q2": {"a": 0.2, "b": 0.8}, "q3": {"a": 1.0}}
    qrels = {"q1": {"a": 1}, "q2": {"a": 1}, "q4": {"a": 1}}  # q3 unjudged, q4 not ranked
    got = evaluate_run(run, qrels, ["ndcg@10", "mrr@10", "recall@1"])
    assert got["mrr@10"] == pytest.approx((1 + 1 / 2) / 2)
    assert got["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert got["recall@1"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_run(run, qrels, ["precision@5"])
    with pytest.raises(ValueError, match="no judged query"):
        evaluate_run(run, {"q9": {"a": 1}})


def test_top_k_keeps_ties_at_the_cut_so_id_order_decides() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.5, 0.1]])
    run = top_k(scores, ["q"], ["a", "b", "c", "d", "e"], k=2)
    assert set(run["q"]) == {"a", "b", "c", "d"}  # three tied at the cut
    assert rank(run["q"])[:2] == ["b", "d"]
    assert set(top_k(scores, ["q"], list("abcde"), k=10)["q"]) == set("abcde")


def _random_case(seed: int) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    rnd = random.Random(seed)
    docs = [str(i) for i in range(60)]
    run, qrels = {}, {}
    for q in range(15):
        # coarse scores make many ties, so the tie order matters
        run[f"q{q}"] = {d: rnd.randint(0, 8) / 8 for d in rnd.sample(docs, 40)}
        qrels[f"q{q}"] = {d: rnd.choice([0, 1, 1, 2, 3]) for d in rnd.sample(docs, 8)}
    return run, qrels


@pytest.mark.reference
def test_same_numbers_as_pytrec_eval() -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    for seed in range(5):
        run, qrels = _random_case(seed)
        evaluator = pytrec_eval.RelevanceEvaluator(
            qrels, {"ndcg_cut.10", "map_cut.100", "recall.100", "recip_rank"}
        )
        per_query = evaluator.evaluate(run)
        theirs = {
            "ndcg@10": np.mean([v["ndcg_cut_10"] for v in per_query.values()]),
            "map@100": np.mean([v["map_cut_100"] for v in per_query.values()]),
            "recall@100": np.mean([v["recall_100"] for v in per_query.values()]),
            # recip_rank has no cut-off; at k=100 >= every run's length it is MRR@100
            "mrr@100": np.mean([v["recip_rank"] for v in per_query.values()]),
        }
        ours = evaluate_run(run, qrels, list(theirs))
        for metric, value in theirs.items():
            assert ours[metric] == pytest.approx(value, abs=1e-9), (seed, metric)
