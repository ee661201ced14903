from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from embedserve.config import Settings
from embedserve.engine.fake import FakeEngine
from embedserve.errors import ModelNotFound
from embedserve.server.app import create_app
from embedserve.store.names import canonical

from .llm_stub import llm_stub

INSTALLED = {"all-minilm:latest", "fake:latest"}


def loader(name: str) -> FakeEngine:
    canon = canonical(name)
    if canon not in INSTALLED:
        raise ModelNotFound(f"model '{canon}' is not installed", name=canon)
    return FakeEngine(canon, dim=32, max_tokens=16)


def client_for(settings: Settings) -> TestClient:
    return TestClient(create_app(settings, loader=loader, store=object()), base_url="http://127.0.0.1")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with client_for(settings) as c:
        yield c


DOCS = [
    {"id": "cat", "text": "the cat sat on the mat", "metadata": {"kind": "pet", "legs": 4}},
    {"id": "bird", "text": "birds sing in the morning", "metadata": {"kind": "wild", "legs": 2}},
    {"id": "long", "text": " ".join(f"w{i}" for i in range(40)) + " zebra crossing river", "metadata": {}},
]


def test_collection_lifecycle(client: TestClient, settings: Settings) -> None:
    r = client.post("/api/collections", json={"name": "kb", "model": "fake", "chunk_tokens": 10, "overlap": 2})
    assert r.status_code == 201, r.text
    assert r.json()["model"] == "fake:latest" and r.json()["chunk_tokens"] == 10
    assert client.post("/api/collections", json={"name": "kb"}).status_code == 200
    r = client.post("/api/collections/kb/documents", json={"documents": DOCS})
    assert r.status_code == 200, r.text
    assert r.json()["added"] == 3 and r.json()["chunks"] > 3
    r = client.post("/api/collections/kb/documents", json={"documents": DOCS[:1]})
    assert r.json()["unchanged"] == 1 and r.json()["chunks"] == 0

    r = client.post("/api/collections/kb/query", json={"query": "zebra river crossing", "top_k": 2})
    hits = r.json()["results"]
    assert hits[0]["id"] == "long" and hits[0]["chunk"]["index"] > 0
    assert set(hits[0]) == {"id", "score", "text", "metadata", "chunk"}
    assert set(hits[0]["chunk"]) == {"index", "start", "end"}
    r = client.post("/api/collections/kb/query", json={"queries": ["cat mat", "birds"], "top_k": 1, "where": {"legs": {"$lte": 4}}})
    assert [[h["id"] for h in hs] for hs in r.json()["results"]] == [["cat"], ["bird"]]

    assert client.get("/api/collections/kb").json()["documents"] == 3
    assert [c["name"] for c in client.get("/api/collections").json()["collections"]] == ["kb"]
    r = client.request("DELETE", "/api/collections/kb/documents", json={"where": {"kind": "wild"}})
    assert r.json() == {"deleted": 1}
    r = client.request("DELETE", "/api/collections/kb/documents", json={"ids": ["cat"]})
    assert r.json() == {"deleted": 1}
    assert client.delete("/api/collections/kb").json() == {"deleted": "kb"}
    assert client.get("/api/collections/kb").status_code == 404


def test_documents_create_with_default_model(client: TestClient) -> None:
    r = client.post("/api/collections/auto/documents", json={"documents": [{"text": "hello world"}]})
    assert r.status_code == 200, r.text
    assert client.get("/api/collections/auto").json()["model"] == "all-minilm:latest"


@pytest.mark.parametrize(
    "method,path,body,status,msg",
    [
        ("POST", "/api/collections/nope/query", {"query": "x"}, 404, "collection 'nope' not found"),
        ("GET", "/api/collections/nope", None, 404, "not found"),
        ("DELETE", "/api/collections/nope", None, 404, "not found"),
        ("POST", "/api/collections/kb/query", {"query": "x", "where": {"a": {"$regex": "b"}}}, 400, "unknown operator '$regex'"),
        ("POST", "/api/collections/kb/query", {"query": "x", "where": []}, 400, "bad filter"),
        ("POST", "/api/collections/kb/query", {"query": "x", "queries": ["y"]}, 400, "exactly one"),
        ("POST", "/api/collections/kb/query", {"query": "x", "top_k": 0}, 400, "top_k"),
        ("POST", "/api/collections/kb/documents", {"documents": [{"id": "x", "text": 5}]}, 400, "'text' must be"),
        ("POST", "/api/collections/kb/documents", {"documents": [{"id": "x", "embedding": [1, 2]}]}, 400,
         "'embedding' has 2 values"),
        ("POST", "/api/collections/kb/documents", {"docs": []}, 400, "'documents'"),
        ("DELETE", "/api/collections/kb/documents", {}, 400, "'ids'"),
        ("POST", "/api/collections", {"name": "kb", "model": "other"}, 400, "uses model fake:latest"),
        ("POST", "/api/collections", {"name": "new", "model": "missing"}, 404, "not installed"),
        ("POST", "/api/collections", {"name": "bad/name"}, 400, "invalid collection name"),
        ("POST", "/api/collections", {"name": "x2", "model": "fake", "chunk_tokens": 99}, 400, "window"),
    ],
)
def test_errors(client: TestClient, method: str, path: str, body: object, status: int, msg: str) -> None:
    client.post("/api/collections", json={"name": "kb", "model": "fake"})
    r = client.request(method, path, json=body) if body is not None else client.request(method, path)
    assert r.status_code == status, r.text
    assert msg in r.json()["error"]


def test_ask_without_and_with_llm(settings: Settings) -> None:
    with client_for(settings) as c:
        c.post("/api/collections/kb/documents", json={"documents": DOCS})
        r = c.post("/api/collections/kb/ask", json={"question": "where does the cat sit?"})
        body = r.json()
        assert body["answer"] is None and "[cat#0]" in body["prompt"] and body["sources"][0]["source"] == "cat#0"
    with llm_stub() as stub:
        with client_for(replace(settings, llm_url=stub.url, llm_model="tiny")) as c:
            r = c.post("/api/collections/kb/ask", json={"question": "cat mat"})
            lines = [json.loads(x) for x in r.text.splitlines()]
            assert "".join(x.get("response", "") for x in lines) == "The answer is in [a#0]."
            assert lines[-1]["done"] is True and lines[-1]["sources"][0]["id"] == "cat"
            r = c.post("/api/collections/kb/ask", json={"question": "cat mat", "stream": False})
            assert r.json()["answer"] == "The answer is in [a#0]."
            stub.mode = "status500"
            r = c.post("/api/collections/kb/ask", json={"question": "cat mat"})
            assert r.status_code == 502 and "HTTP 500" in r.json()["error"]


def test_server_and_library_share_the_store(client: TestClient, settings: Settings) -> None:
    from embedserve.index.collection import Collection
    from embedserve.embedder import Embedder

    client.post("/api/collections/kb/documents", json={"documents": DOCS[:1]})
    client.post("/api/collections/kb/query", json={"query": "cat"})  # server caches the matrix
    lib = Collection.open("kb", settings=settings, encoder=Embedder.from_engine(FakeEngine("all-minilm:latest", max_tokens=16)))
    lib.add(DOCS[1:2])  # as a CLI `index add` in another process would
    r = client.post("/api/collections/kb/query", json={"query": "birds sing morning", "top_k": 1})
    assert r.json()["results"][0]["id"] == "bird"


def test_documents_with_own_embeddings_and_empty_records(client: TestClient) -> None:
    client.post("/api/collections", json={"name": "kb", "model": "fake"})
    r = client.post("/api/embed", json={"model": "fake", "input": ["quantum physics lecture"]})
    vec = r.json()["embeddings"][0]
    r = client.post("/api/collections/kb/documents", json={"documents": [
        {"id": "mine", "text": "brought its own vector", "embedding": vec},
        {"id": "blank", "text": ""},
        {"id": "ok", "text": "a plain one"},
    ]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["added"], body["empty"], body["empty_ids"], body["chunks"]) == (2, 1, ["blank"], 2)
    hits = client.post("/api/collections/kb/query", json={"query": "quantum physics lecture", "top_k": 1}).json()
    assert hits["results"][0]["id"] == "mine" and hits["results"][0]["score"] > 0.999


def test_a_prompted_models_collection_embeds_like_the_library_over_http(settings: Settings) -> None:
    """The server applies the model's document and query prompts as ``index add`` and
    ``Collection.query`` do, so a collection written by one is read right by the other."""
    from embedserve.embedder import Embedder
    from embedserve.index.collection import Collection

    prompts = {"search_query": "search_query: ", "search_document": "search_document: "}

    def prompted(name: str) -> FakeEngine:
        engine = loader(name)
        engine.info = replace(engine.info, prompts=prompts)
        return engine

    docs = [{"id": d["id"], "text": d["text"]} for d in DOCS[:2]]
    with TestClient(create_app(settings, loader=prompted, store=object()),
                    base_url="http://127.0.0.1") as c:
        assert c.post("/api/collections", json={"name": "srv", "model": "fake"}).status_code == 201
        assert c.post("/api/collections/srv/documents", json={"documents": docs}).status_code == 200
        got = c.post("/api/collections/srv/query", json={"query": "cat on a mat", "top_k": 2}).json()
    lib = Embedder.from_engine(prompted("fake"))
    with Collection.open("lib", settings=settings, model="fake:latest", encoder=lib) as col:
        col.add(docs)
        want = [(h.id, h.score) for h in col.query("cat on a mat", top_k=2)]
    assert [(h["id"], pytest.approx(h["score"], abs=1e-6)) for h in got["results"]] == want
    with Collection.open("srv", settings=settings, encoder=lib) as col:  # the library reads the server's
        assert [(h.id, pytest.approx(h.score, abs=1e-6)) for h in col.query("cat on a mat", top_k=2)] == want


def test_a_multivector_collection_over_http_runs_the_model_once_per_chunk(settings: Settings) -> None:
    from embedserve.embedder import Embedder
    from embedserve.index import multivector
    from embedserve.index.collection import Collection

    engines: list[FakeEngine] = []

    def recording(name: str) -> FakeEngine:
        engines.append(loader(name))
        return engines[-1]

    lib = Embedder.from_engine(loader("fake"))
    with Collection.open("mv", settings=settings, model="fake:latest", encoder=lib,
                         chunk_tokens=10, overlap=2) as col:
        multivector.enable(col, "float32")  # (as `index create --multivector` does)
    with TestClient(create_app(settings, loader=recording, store=object()),
                    base_url="http://127.0.0.1") as c:
        r = c.post("/api/collections/mv/documents", json={"documents": DOCS})
        assert r.status_code == 200, r.text
        chunks = r.json()["chunks"]
        assert chunks > len(DOCS) and sum(engines[0].batches) == chunks  # one run, not two
        body = {"query": "zebra river crossing", "top_k": 2, "rerank": "maxsim", "candidates": 3}
        got = c.post("/api/collections/mv/query", json=body).json()["results"]
    with Collection.open("mvlib", settings=settings, model="fake:latest", encoder=lib,
                         chunk_tokens=10, overlap=2) as col:  # the library's own, for reference
        multivector.enable(col, "float32")
        col.add(DOCS)
        want = col.query("zebra river crossing", top_k=2, rerank="maxsim", candidates=3)
    assert [(h["id"], pytest.approx(h["score"], abs=1e-6)) for h in got] == [(h.id, h.score) for h in want]
