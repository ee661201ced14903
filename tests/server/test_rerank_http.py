"""``/v1/rerank`` (Cohere/Jina), ``/rerank`` (TEI) and ``/embed_all`` over real HTTP.

A real server on loopback with tiny random-weight models created from folders (a cross-encoder, a
ColBERT checkpoint, an embedder): the HTTP answers equal the library's on the same models.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from embedserve.config import Settings
from embedserve.embedder import Embedder
from embedserve.reranker import Reranker
from embedserve.server.app import create_app
from embedserve.store.local import ModelStore
from serverkit import serve
from tinybert import make_tiny_bert
from tinymodels import make_tiny_colbert, make_tiny_cross_encoder

QUERY = "why is the sky blue?"
DOCS = ["the sky is blue because of light", "a dog runs fast", "blue sky", "music and books"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rerank-http")
    store = ModelStore(root / "home")
    store.create("tiny-rerank", source=make_tiny_cross_encoder(root / "ce"))
    store.create("tiny-colbert", source=make_tiny_colbert(root / "cb"))
    store.create("tiny-embed", source=make_tiny_bert(root / "emb", layers=1, hidden=16, heads=2,
                                                      intermediate=32))
    return root / "home"


@pytest.fixture(scope="module")
def settings(home: Path) -> Settings:
    return Settings(home=home, offline=True, max_inputs=8)


@pytest.fixture(scope="module")
def base(settings: Settings) -> Iterator[str]:
    with serve(create_app(settings)) as url:
        yield url


def post(base: str, path: str, body: Any) -> httpx.Response:
    return httpx.post(base + path, json=body, timeout=60)


def test_v1_rerank_cohere_shape(base: str, settings: Settings) -> None:
    lib = Reranker("tiny-rerank", settings=settings).score(QUERY, DOCS)
    r = post(base, "/v1/rerank", {"model": "tiny-rerank", "query": QUERY,
                                  "documents": [DOCS[0], {"text": DOCS[1]}, *DOCS[2:]]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "tiny-rerank" and body["usage"]["total_tokens"] > 0
    results = body["results"]
    assert [x["index"] for x in results] == list(np.argsort(-lib, kind="stable"))
    for x in results:
        assert x["relevance_score"] == pytest.approx(float(lib[x["index"]]), abs=1e-5)
        assert x["document"] == {"text": DOCS[x["index"]]}
    top = post(base, "/v1/rerank", {"model": "tiny-rerank", "query": QUERY, "documents": DOCS,
                                    "top_n": 2, "return_documents": False}).json()["results"]
    assert [x["index"] for x in top] == [x["index"] for x in results[:2]]
    assert all("document" not in x for x in top)


def test_tei_rerank_shape_and_raw_scores(base: str, settings: Settings) -> None:
    raw = Reranker("tiny-rerank", settings=settings).predict([(QUERY, d) for d in DOCS], raw=True)
    r = post(base, "/rerank", {"model": "tiny-rerank", "query": QUERY, "texts": DOCS,
                               "raw_scores": True, "return_text": True})
    assert r.status_code == 200, r.text
    out = r.json()
    assert [x["index"] for x in out] == list(np.argsort(-raw, kind="stable"))
    for x in out:
        assert x["score"] == pytest.approx(float(raw[x["index"]]), abs=1e-5)
        assert x["text"] == DOCS[x["index"]]


def test_colbert_reranks_by_maxsim(base: str, settings: Settings) -> None:
    lib = Reranker("tiny-colbert", settings=settings).score(QUERY, DOCS)
    out = post(base, "/v1/rerank", {"model": "tiny-colbert", "query": QUERY,
                                    "documents": DOCS}).json()["results"]
    assert [x["index"] for x in out] == list(np.argsort(-lib, kind="stable"))
    assert out[0]["relevance_score"] == pytest.approx(float(lib.max()), abs=1e-4)


def test_embed_all_token_vectors(base: str, settings: Settings) -> None:
    emb = Embedder("tiny-embed", settings=settings)
    want = emb.encode(DOCS[:2], output="token")
    r = post(base, "/embed_all", {"model": "tiny-embed", "inputs": DOCS[:2]})
    assert r.status_code == 200, r.text
    got = [np.array(x, np.float32) for x in r.json()]
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, atol=1e-5)
    one = post(base, "/embed_all", {"model": "tiny-embed", "inputs": DOCS[0],
                                    "normalize": False}).json()
    raw = emb.encode(DOCS[0], output="token", normalize=False)
    np.testing.assert_allclose(np.array(one[0], np.float32), raw, atol=1e-4)
    query = post(base, "/embed_all", {"model": "tiny-colbert", "inputs": QUERY, "role": "query"})
    assert np.array(query.json()[0]).shape == (12, 16)  # query_maxlen rows


@pytest.mark.parametrize(
    "path,body,status,message",
    [
        ("/v1/rerank", {"query": QUERY, "documents": DOCS}, 400, "model is required"),
        ("/v1/rerank", {"model": "nope", "query": QUERY, "documents": DOCS}, 404,
         'model "nope" not found, try pulling it first'),
        ("/v1/rerank", {"model": "tiny-rerank", "query": QUERY, "documents": "x"}, 400,
         "documents must be a list of strings or of objects with a text field"),
        ("/v1/rerank", {"model": "tiny-rerank", "query": QUERY, "documents": [1]}, 400,
         "documents[0] must be a string or an object with a string text"),
        ("/v1/rerank", {"model": "tiny-rerank", "query": "", "documents": DOCS}, 400,
         "query must be a non-empty string"),
        ("/v1/rerank", {"model": "tiny-rerank", "query": QUERY, "documents": DOCS, "top_n": 0},
         400, "top_n must be at least 1, got 0"),
        ("/v1/rerank", {"model": "tiny-rerank", "query": QUERY}, 400, "documents is required"),
        ("/v1/rerank", {"model": "tiny-embed", "query": QUERY, "documents": DOCS}, 400,
         '"tiny-embed" does not support rerank'),
        ("/v1/rerank", {"model": "tiny-rerank", "query": QUERY, "documents": DOCS * 3}, 400,
         "too many inputs: 13 in one request, the limit is 8"),
        ("/rerank", {"model": "tiny-rerank", "query": QUERY}, 400, "texts is required"),
        ("/api/embed", {"model": "tiny-rerank", "input": "x"}, 400,
         '"tiny-rerank" does not support embeddings'),
        ("/embed_all", {"model": "tiny-rerank", "inputs": "x"}, 400,
         '"tiny-rerank" does not support token embeddings'),
        ("/embed_all", {"model": "tiny-embed", "inputs": 3}, 400,
         "inputs must be a string or a list of strings"),
        ("/embed_all", {"model": "tiny-embed", "inputs": "x", "role": "q"}, 400,
         "role must be 'query' or 'document', got 'q'"),
        ("/embed_all", {"model": "tiny-embed", "inputs": "the sky " * 40, "truncate": False},
         400, "the input length exceeds the context length"),
    ],
)
def test_errors(base: str, path: str, body: dict[str, Any], status: int, message: str) -> None:
    r = post(base, path, body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert (error["message"] if path.startswith("/v1/") else error) == message
