"""``embedserve.integrations.mteb`` run by ``mteb.evaluate`` on tasks built from local data (no
download): mteb's scores must equal embedserve's own ``eval`` on the same data and vectors."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from servicekit import in_ci

from embedserve.embedder import Embedder
from embedserve.engine.fake import FakeEngine
from embedserve.eval.data import load_stsb
from embedserve.eval.formats import RetrievalData
from embedserve.eval.quality import EvalData, evaluate
from embedserve.eval.tasks import StsData

if importlib.util.find_spec("mteb") is None:  # skip here, fail under CI=true
    if in_ci():
        raise RuntimeError("CI needs mteb: pip install -e '.[mteb]'")
    pytest.skip("needs mteb: pip install -e '.[mteb]'", allow_module_level=True)
import mteb
from datasets import Dataset, DatasetDict
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata

from embedserve.integrations.mteb import EmbedserveEncoder

META = {
    "description": "Local data for embedserve's tests.",
    "reference": "https://example.org/embedserve",
    "dataset": {"path": "NA", "revision": "NA"},
    "category": "t2t",
    "eval_splits": ["test"],
    "eval_langs": ["eng-Latn"],
    "date": ("2024-01-01", "2024-01-01"),
    "dialect": ["Written"],
    "domains": [],
    "task_subtypes": [],
    "license": "cc-by-4.0",
    "annotations_creators": "derived",
    "modalities": ["text"],
    "sample_creation": "found",
    "bibtex_citation": "",
}

STS_PAIRS = load_stsb("dev")[:120]  # the packaged STS-B dev


class LocalSTS(AbsTaskSTS):  # type: ignore[misc]
    metadata = TaskMetadata(type="STS", name="LocalSTSB", main_score="cosine_spearman", **META)
    min_score = 0
    max_score = 5

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        a, b, s = zip(*STS_PAIRS)
        self.dataset = DatasetDict(
            {"test": Dataset.from_dict({"sentence1": list(a), "sentence2": list(b), "score": list(s)})}
        )
        self.data_loaded = True


RETRIEVAL = RetrievalData(
    "local",
    corpus={
        "d1": "cats purr softly at night",
        "d2": "dogs bark loudly",
        "d3": "fish swim in rivers",
        "d4": "cats and dogs",
        "d5": "the night is dark",
    },
    queries={"q1": "why do cats purr", "q2": "loud dogs bark", "q3": "dark night fish"},
    qrels={"q1": {"d1": 2, "d4": 1}, "q2": {"d2": 1, "d4": 1}, "q3": {"d5": 1, "d3": 2}},
)


class LocalRetrieval(AbsTaskRetrieval):  # type: ignore[misc]
    metadata = TaskMetadata(type="Retrieval", name="LocalRetrieval", main_score="ndcg_at_10", **META)

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        split = RetrievalSplitData(
            queries=Dataset.from_list([{"id": k, "text": v} for k, v in RETRIEVAL.queries.items()]),
            corpus=Dataset.from_list([{"id": k, "text": v} for k, v in RETRIEVAL.corpus.items()]),
            relevant_docs=RETRIEVAL.qrels,
            top_ranked=None,
        )
        self.dataset = {"default": {"test": split}}
        self.data_loaded = True


def _scores(encoder: EmbedserveEncoder, tmp_path: Path) -> dict[str, dict[str, float]]:
    res = mteb.evaluate(
        encoder, [LocalSTS(), LocalRetrieval()], cache=None, show_progress_bar=False
    )
    return {r.task_name: r.scores["test"][0] for r in res.task_results}


def test_fake_model_scores_equal_embedserve_eval(tmp_path: Path) -> None:
    emb = Embedder.from_engine(FakeEngine())
    enc = EmbedserveEncoder(embedder=emb)
    assert isinstance(enc, mteb.models.models_protocols.EncoderProtocol)
    meta = enc.mteb_model_meta
    assert meta.name == "embedserve/fake-latest" and meta.embed_dim == emb.info.dim
    got = _scores(enc, tmp_path)
    ours = evaluate("fake", emb, EvalData([StsData("s", STS_PAIRS), RETRIEVAL])).metrics
    assert got["LocalSTSB"]["cosine_spearman"] == pytest.approx(ours["s"]["spearman"], abs=1e-6)
    r = got["LocalRetrieval"]
    assert r["ndcg_at_10"] == pytest.approx(ours["local"]["ndcg@10"], abs=1e-5)
    assert r["map_at_100"] == pytest.approx(ours["local"]["map@100"], abs=1e-5)
    assert r["recall_at_100"] == pytest.approx(ours["local"]["recall@100"], abs=1e-5)
    assert r["mrr_at_10"] == pytest.approx(ours["local"]["mrr@10"], abs=1e-5)


@pytest.mark.slow
def test_real_model_through_mteb(real_home: Path, tmp_path: Path) -> None:
    from embedserve.config import Settings

    emb = Embedder("all-minilm", settings=Settings(home=real_home, offline=True))
    got = _scores(EmbedserveEncoder(embedder=emb), tmp_path)
    ours = evaluate("all-minilm", emb, EvalData([StsData("s", STS_PAIRS)])).scores["s"]
    assert got["LocalSTSB"]["cosine_spearman"] == pytest.approx(ours, abs=1e-6)
    assert 0.8 < ours < 0.95  # a real model on real STS-B pairs
    assert got["LocalRetrieval"]["ndcg_at_10"] > 0.8


def test_without_mteb_the_import_is_one_clear_error() -> None:
    code = (
        "import sys; sys.modules['mteb'] = None\n"
        "try:\n    import embedserve.integrations.mteb\n"
        "except Exception as e:\n    print(json.dumps([type(e).__name__, str(e)]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == ["UserError", "mteb is not installed; pip install 'embedserve[mteb]'"]
