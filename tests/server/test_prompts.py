"""Prompts from the model folder (config_sentence_transformers.json) in the library, over HTTP
(``prompt_name`` on /api/embed and /v1/embeddings, official openai client included) and in
collections, with a real tiny NomicBERT model (search_query / search_document prompts)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from serverkit import serve

from embedserve.config import Settings
from embedserve.embedder import Embedder
from embedserve.errors import InvalidInput
from embedserve.server.app import create_app
from embedserve.store.local import ModelStore
from tinyfamilies import make_nomic

TEXTS = ["why is the sky blue", "the man plays the guitar"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prompts")
    folder = make_nomic(root / "src", layers=2, hidden=32, heads=4, intermediate=48)
    ModelStore(root / "home").create("nomic-tiny", source=folder)
    cfg = json.loads((folder / "config_sentence_transformers.json").read_text())
    cfg["default_prompt_name"] = "search_query"
    (folder / "config_sentence_transformers.json").write_text(json.dumps(cfg))
    ModelStore(root / "home").create("nomic-default", source=folder)
    return root / "home"


@pytest.fixture(scope="module")
def emb(home: Path) -> Embedder:
    return Embedder("nomic-tiny", settings=Settings(home=home, offline=True))


def test_prompt_name_prepends_the_models_prompt(emb: Embedder) -> None:
    assert emb.prompts == {"search_query": "search_query: ", "search_document": "search_document: "}
    plain = emb.encode(TEXTS)
    query = emb.encode(TEXTS, prompt_name="search_query")
    np.testing.assert_allclose(query, emb.encode(["search_query: " + t for t in TEXTS]), atol=1e-6)
    assert float((plain * query).sum(1).max()) < 0.9999  # the prompt really changed the vectors
    np.testing.assert_allclose(emb.encode(TEXTS, prompt="search_query: "), query, atol=1e-6)
    np.testing.assert_allclose(emb.encode(TEXTS[0], prompt_name="search_query"), query[0], atol=1e-6)
    counts = emb.count_tokens(TEXTS, prompt_name="search_query")
    assert counts == [len(ids) for ids in emb.engine.tokenize(["search_query: " + t for t in TEXTS])]
    assert counts[0] > emb.count_tokens(TEXTS)[0]


def test_bad_prompt_requests_say_what_is_wrong(emb: Embedder) -> None:
    with pytest.raises(InvalidInput, match="unknown prompt_name 'query' for model 'nomic-tiny:latest'; "
                                           "its prompts: 'search_query', 'search_document'"):
        emb.encode(TEXTS, prompt_name="query")
    with pytest.raises(InvalidInput, match="either prompt or prompt_name, not both"):
        emb.encode(TEXTS, prompt_name="search_query", prompt="x: ")


def test_default_prompt_name_applies_when_none_is_asked(home: Path, emb: Embedder) -> None:
    default = Embedder("nomic-default", settings=Settings(home=home, offline=True))
    np.testing.assert_allclose(default.encode(TEXTS), emb.encode(TEXTS, prompt_name="search_query"),
                               atol=1e-6)
    np.testing.assert_allclose(default.encode(TEXTS, prompt=""), emb.encode(TEXTS), atol=1e-6)


@pytest.fixture(scope="module")
def url(home: Path) -> Iterator[str]:
    with serve(create_app(replace(Settings(), home=home, offline=True))) as base:
        yield base


def test_http_prompt_name(url: str, emb: Embedder) -> None:
    want = emb.encode(TEXTS, prompt_name="search_document")
    r = httpx.post(f"{url}/api/embed", json={"model": "nomic-tiny", "input": TEXTS,
                                             "prompt_name": "search_document"}, timeout=30)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["embeddings"]), want, atol=1e-5)
    assert r.json()["prompt_eval_count"] == sum(emb.count_tokens(TEXTS, prompt_name="search_document"))
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x")
    got = client.embeddings.create(model="nomic-tiny", input=TEXTS,
                                   extra_body={"prompt_name": "search_document"})
    np.testing.assert_allclose(np.array([d.embedding for d in got.data]), want, atol=1e-5)
    assert got.usage.prompt_tokens == r.json()["prompt_eval_count"]


def test_http_unknown_prompt_name_is_a_400_listing_the_prompts(url: str) -> None:
    r = httpx.post(f"{url}/api/embed", json={"model": "nomic-tiny", "input": "x",
                                             "prompt_name": "query"}, timeout=30)
    assert r.status_code == 400
    assert r.json() == {"error": "unknown prompt_name 'query' for model 'nomic-tiny:latest'; "
                                 "its prompts: 'search_query', 'search_document'"}
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x")
    with pytest.raises(openai.BadRequestError, match="its prompts: 'search_query'"):
        client.embeddings.create(model="nomic-tiny", input="x", extra_body={"prompt_name": "query"})
    r = httpx.post(f"{url}/api/embed", json={"model": "nomic-tiny", "input": "x", "prompt_name": 3})
    assert r.status_code == 400 and "prompt_name" in r.json()["error"]


def test_collections_apply_the_document_and_query_prompts(tmp_path: Path, emb: Embedder) -> None:
    from embedserve.index.encoder import encode_normalized

    docs = emb.encode(TEXTS, prompt_name="search_document")
    np.testing.assert_allclose(encode_normalized(emb, TEXTS, "document"), docs, atol=1e-6)
    np.testing.assert_allclose(encode_normalized(emb, TEXTS, "query"),
                               emb.encode(TEXTS, prompt_name="search_query"), atol=1e-6)
    np.testing.assert_allclose(encode_normalized(emb, TEXTS), emb.encode(TEXTS), atol=1e-6)


def test_corpus_shard_applies_the_jobs_prompt(home: Path, emb: Embedder, tmp_path: Path) -> None:
    """``embed --ray`` / ``index add --ray``: an actor embeds its shard with the job's prompt."""
    from embedserve.ray import corpus
    from embedserve.ray.shards import plan

    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    settings = Settings(home=home, offline=True)
    for prompt_name, out in ((None, "plain"), ("search_document", "doc")):
        job = corpus.Job(model="nomic-tiny", inputs=(str(source),), output=str(tmp_path / out),
                         fmt="npy", prompt_name=prompt_name)
        (tmp_path / out).mkdir()
        for shard in plan([str(source)], job.shard_rows):
            corpus.ShardEmbedder(job, settings).run(shard)
        got = np.load(tmp_path / out / corpus.shard_name(0, "npy"))
        np.testing.assert_allclose(got, emb.encode(TEXTS, prompt_name=prompt_name), atol=1e-6)
