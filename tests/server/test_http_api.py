"""The HTTP surface over a real uvicorn server on loopback, with the fake engine: shapes, texts, limits."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator

import httpx
import numpy as np
import orjson
import pytest
from serverkit import FakeLoader, FakeStore, serve, settings

from embedserve.server.app import create_app
from embedserve.vectors import l2_normalize

BUSY = "server busy, please try again.  maximum pending requests exceeded"


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[str, FakeStore, FakeLoader]]:
    store = FakeStore(installed=("fake", "other"), catalogue=("newmodel",))
    loader = FakeLoader(store)
    app = create_app(settings(max_inputs=50, max_body_bytes=20_000), loader=loader, store=store)
    with serve(app) as url:
        yield url, store, loader


@pytest.fixture
def client(world: tuple[str, FakeStore, FakeLoader]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=world[0], timeout=10) as c:
        yield c


def reference(loader: FakeLoader, texts: list[str]) -> np.ndarray:
    """What the fake engine gives for ``texts`` when run one by one, outside the server."""
    from embedserve.engine.fake import FakeEngine

    engine = FakeEngine("fake:latest", dim=32, max_tokens=64)
    return np.stack([engine.embed_ids(engine.tokenize([t]))[0] for t in texts])


# -- /api/embed ---------------------------------------------------------------------------------


def test_embed_single_and_batch_are_normalised_and_counted(client, world) -> None:
    r = client.post("/api/embed", json={"model": "fake", "input": "why is the sky blue?"})
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "fake"  # echoed as sent
    assert len(body["embeddings"]) == 1 and len(body["embeddings"][0]) == 32
    assert math.isclose(np.linalg.norm(body["embeddings"][0]), 1.0, rel_tol=1e-5)
    assert body["prompt_eval_count"] == 8  # [CLS] why is the sky blue ? [SEP]
    assert body["total_duration"] > 0 and body["load_duration"] > 0
    texts = ["why is the sky blue?", "why is the grass green?"]
    r = client.post("/api/embed", json={"model": "fake", "input": texts})
    body = r.json()
    assert body["prompt_eval_count"] == 16
    expected = l2_normalize(reference(world[2], texts))
    assert np.allclose(body["embeddings"], expected, atol=1e-6)


def test_embed_accepts_old_client_nulls_and_dimensions(client) -> None:
    r = client.post(
        "/api/embed",
        json={
            "model": "fake",
            "input": "a b c",
            "truncate": None,
            "options": {},
            "keep_alive": None,
            "dimensions": 8,
        },
    )
    assert r.status_code == 200
    vec = r.json()["embeddings"][0]
    assert len(vec) == 8 and math.isclose(np.linalg.norm(vec), 1.0, rel_tol=1e-5)
    for ignored in (0, -3, 32, 999):
        r = client.post("/api/embed", json={"model": "fake", "input": "a", "dimensions": ignored})
        assert len(r.json()["embeddings"][0]) == 32


@pytest.mark.parametrize("value", ["", None])
def test_embed_empty_input_loads_and_returns_nothing(client, value) -> None:
    r = client.post("/api/embed", json={"model": "other", "input": value})
    assert r.status_code == 200
    assert r.json() == {"model": "other", "embeddings": []}
    names = [m["name"] for m in client.get("/api/ps").json()["models"]]
    assert "other:latest" in names


def test_embed_empty_string_inside_list_is_embedded(client) -> None:
    r = client.post("/api/embed", json={"model": "fake", "input": ["", "x"]})
    assert r.status_code == 200 and len(r.json()["embeddings"]) == 2


def test_truncation(client) -> None:
    long_text = " ".join(["word"] * 100)  # 102 tokens > 64
    r = client.post("/api/embed", json={"model": "fake", "input": long_text})
    assert r.status_code == 200 and r.json()["prompt_eval_count"] == 64
    r = client.post(
        "/api/embed", json={"model": "fake", "input": ["ok", long_text], "truncate": False}
    )
    assert r.status_code == 400
    assert r.json() == {"error": "the input length exceeds the context length"}


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"model": "fake", "input": [1, 2, 3]}, 400, "invalid input type"),
        ({"model": "fake", "input": 5}, 400, "invalid input type"),
        ({"model": "fake", "input": {"a": 1}}, 400, "invalid input type"),
        ({"model": "fake", "input": ["a", None]}, 400, "invalid input type"),
        (
            {"model": 5, "input": "x"},
            400,
            "json: cannot unmarshal number into Go struct field EmbedRequest.model of type string",
        ),
        (
            {"model": "fake", "input": "x", "truncate": "yes"},
            400,
            "json: cannot unmarshal string into Go struct field EmbedRequest.truncate of type bool",
        ),
        (
            {"model": "fake", "input": "x", "keep_alive": "-1"},
            400,
            'time: missing unit in duration "-1"',
        ),
        ({"model": "fake", "input": "x", "keep_alive": True}, 400, "Unsupported type: 'bool'"),
        (
            {"model": "fake", "input": "x", "options": {"num_ctx": "x"}},
            400,
            'option "num_ctx" must be of type integer',
        ),
        ({"model": "bad name!", "input": "x"}, 400, "invalid model name"),
        ({"model": "", "input": "x"}, 404, "model '' not found"),
        (
            {"model": "missing", "input": "x"},
            404,
            'model "missing" not found, try pulling it first',
        ),
        (
            {"model": "fake", "input": ["x"] * 51},
            400,
            "too many inputs: 51 in one request, the limit is 50",
        ),
    ],
)
def test_embed_errors(client, body, status, error) -> None:
    r = client.post("/api/embed", json=body)
    assert r.status_code == status
    assert r.json() == {"error": error}


def test_bodies(client) -> None:
    r = client.post("/api/embed", content=b"")
    assert (r.status_code, r.json()) == (400, {"error": "missing request body"})
    r = client.post("/api/embed", content=b"{not json")
    assert r.status_code == 400 and "error" in r.json()
    r = client.post("/api/embed", content=b"[1]")
    assert r.status_code == 400
    assert (
        r.json()["error"] == "json: cannot unmarshal array into Go value of type api.EmbedRequest"
    )
    big = orjson.dumps({"model": "fake", "input": "x" * 30_000})
    r = client.post("/api/embed", content=big)
    assert r.status_code == 413 and "20000" in r.json()["error"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(30):
            yield b" " * 1000

    r = client.post("/api/embed", content=chunks())
    assert r.status_code == 413


# -- /api/embeddings (legacy) ------------------------------------------------------------------


def test_legacy_embeddings_raw_float64(client, world) -> None:
    r = client.post("/api/embeddings", json={"model": "fake", "prompt": "hello there"})
    assert r.status_code == 200
    vec = np.array(r.json()["embedding"])
    assert np.allclose(
        vec, reference(world[2], ["hello there"])[0], atol=1e-6
    )  # raw, not normalised
    assert not math.isclose(np.linalg.norm(vec), 1.0, rel_tol=1e-3)
    assert "." in r.text and len(r.text) > 32 * 12  # float64 digits
    assert client.post("/api/embeddings", json={"model": "fake", "prompt": ""}).json() == {
        "embedding": []
    }
    r = client.post("/api/embeddings", json={"model": "", "prompt": "x"})
    assert (r.status_code, r.json()) == (400, {"error": "model is required"})
    r = client.post("/api/embeddings", json={"model": "missing", "prompt": "x"})
    assert r.status_code == 404
    long_text = " ".join(["w"] * 200)
    assert (
        client.post("/api/embeddings", json={"model": "fake", "prompt": long_text}).status_code
        == 200
    )


# -- /v1 -----------------------------------------------------------------------------------------


def test_openai_embeddings_float_and_base64(client, world) -> None:
    texts = ["one two", "three"]
    r = client.post("/v1/embeddings", json={"model": "fake", "input": texts})
    body = r.json()
    assert body["object"] == "list" and body["model"] == "fake"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    floats = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    assert np.allclose(floats, l2_normalize(reference(world[2], texts)), atol=1e-6)
    r = client.post(
        "/v1/embeddings", json={"model": "fake", "input": texts, "encoding_format": "BASE64"}
    )
    decoded = np.stack(
        [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in r.json()["data"]]
    )
    assert np.array_equal(decoded, floats)
    r = client.post("/v1/embeddings", json={"model": "fake", "input": "", "dimensions": 4})
    assert len(r.json()["data"]) == 1 and len(r.json()["data"][0]["embedding"]) == 4


@pytest.mark.parametrize(
    ("body", "status", "fragment", "kind"),
    [
        ({"model": "fake"}, 400, "invalid input", "invalid_request_error"),
        ({"model": "fake", "input": []}, 400, "invalid input", "invalid_request_error"),
        (
            {"model": "fake", "input": [1, 2]},
            400,
            "token ids are not supported",
            "invalid_request_error",
        ),
        (
            {"model": "fake", "input": [[1, 2]]},
            400,
            "token ids are not supported",
            "invalid_request_error",
        ),
        (
            {"model": "fake", "input": "x", "encoding_format": "int8"},
            400,
            "Invalid value for 'encoding_format' = int8. Supported values: ['float', 'base64'].",
            "invalid_request_error",
        ),
        (
            {"model": "nope", "input": "x"},
            404,
            'model "nope" not found, try pulling it first',
            "not_found_error",
        ),
    ],
)
def test_openai_errors(client, body, status, fragment, kind) -> None:
    r = client.post("/v1/embeddings", json=body)
    assert r.status_code == status
    err = r.json()["error"]
    assert fragment in err["message"] and err["type"] == kind
    assert err["param"] is None and err["code"] is None


def test_openai_models(client) -> None:
    data = client.get("/v1/models").json()
    assert data["object"] == "list"
    ids = {m["id"] for m in data["data"]}
    assert {"fake:latest", "other:latest"} <= ids
    assert all(m["owned_by"] == "library" and m["object"] == "model" for m in data["data"])
    one = client.get("/v1/models/fake").json()
    assert one["id"] == "fake" and isinstance(one["created"], int)
    r = client.get("/v1/models/x")
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "model 'x:latest' not found"


# -- management ----------------------------------------------------------------------------------


def test_root_version_tags_show(client) -> None:
    r = client.get("/")
    assert (r.status_code, r.text) == (200, "Ollama is running")
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    r = client.head("/")
    assert r.status_code == 200 and r.content == b""
    assert "version" in client.get("/api/version").json()
    models = client.get("/api/tags").json()["models"]
    entry = next(m for m in models if m["name"] == "fake:latest")
    assert entry["model"] == "fake:latest" and len(entry["digest"]) == 64
    assert set(entry["details"]) >= {
        "format",
        "family",
        "families",
        "parameter_size",
        "quantization_level",
    }
    show = client.post("/api/show", json={"model": "fake"}).json()
    assert "model_info" in show and show["capabilities"] == ["embedding"]
    assert show["parameters"] == "num_ctx                        64"
    r = client.post("/api/show", json={"model": "nope"})
    assert (r.status_code, r.json()) == (404, {"error": "model 'nope:latest' not found"})
    r = client.post("/api/show", json={})
    assert (r.status_code, r.json()) == (400, {"error": "model is required"})


def test_pull_stream_and_not_stream(client, world) -> None:
    with client.stream("POST", "/api/pull", json={"model": "newmodel"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = [orjson.loads(line) for line in r.iter_lines()]
    assert lines[0] == {"status": "pulling manifest"}
    assert lines[-1] == {"status": "success"}
    assert any("completed" in line for line in lines)
    r = client.post("/api/pull", json={"model": "newmodel", "stream": False})
    assert (r.status_code, r.json()) == (200, {"status": "success"})
    with client.stream("POST", "/api/pull", json={"model": "unknownthing"}) as r:
        assert r.status_code == 200
        lines = [orjson.loads(line) for line in r.iter_lines()]
    assert lines[0] == {"status": "pulling manifest"} and "error" in lines[-1]
    r = client.post("/api/pull", json={"model": "unknownthing", "stream": False})
    assert r.status_code == 500 and "file does not exist" in r.json()["error"]
    r = client.post("/api/pull", json={"model": "bad name!"})
    assert (r.status_code, r.json()) == (400, {"error": "invalid model name"})


def test_copy_and_delete(client) -> None:
    assert (
        client.post("/api/copy", json={"source": "fake", "destination": "fake-copy"}).status_code
        == 200
    )
    assert client.post("/api/embed", json={"model": "fake-copy", "input": "x"}).status_code == 200
    r = client.post("/api/copy", json={"source": "ghost", "destination": "y"})
    assert (r.status_code, r.json()) == (404, {"error": 'model "ghost" not found'})
    r = client.post("/api/copy", json={"source": "fake", "destination": "bad name!"})
    assert (r.status_code, r.json()) == (400, {"error": 'destination "bad name!" is invalid'})
    r = client.request("DELETE", "/api/delete", json={"model": "fake-copy"})
    assert (r.status_code, r.content) == (200, b"")
    assert "fake-copy:latest" not in [m["name"] for m in client.get("/api/ps").json()["models"]]
    r = client.request("DELETE", "/api/delete", json={"model": "fake-copy"})
    assert (r.status_code, r.json()) == (404, {"error": "model 'fake-copy:latest' not found"})
    r = client.request("DELETE", "/api/delete", json={"model": "bad name!"})
    assert (r.status_code, r.json()) == (400, {"error": 'name "bad name!" is invalid'})
    r = client.request("DELETE", "/api/delete", content=b"")
    assert (r.status_code, r.json()) == (400, {"error": "missing request body"})


def test_unknown_route_and_wrong_method(client) -> None:
    r = client.get("/api/nothing")
    assert (r.status_code, r.text) == (404, "404 page not found")
    r = client.get("/api/embed")
    assert (r.status_code, r.text) == (405, "405 method not allowed")


def test_host_guard_and_cors(client) -> None:
    assert client.get("/api/version", headers={"Host": "evil.example.com"}).status_code == 403
    for _ in range(2):  # the second round answers from the guard's memo of each Host
        for host in ("localhost:11434", "127.0.0.1", "10.1.2.3:80", "box.local", "[::1]:11434"):
            assert client.get("/api/version", headers={"Host": host}).status_code == 200, host
        assert client.get("/api/version", headers={"Host": "evil.example.com"}).status_code == 403
    r = client.get("/api/version", headers={"Origin": "http://localhost:3000"})
    assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert (
        client.get("/api/version", headers={"Origin": "https://evil.example.com"}).status_code
        == 403
    )
    r = client.options(
        "/api/embed", headers={"Origin": "app://desktop", "Access-Control-Request-Method": "POST"}
    )
    assert r.status_code == 204 and "POST" in r.headers["access-control-allow-methods"]


def test_health_and_metrics(client) -> None:
    client.post("/api/embed", json={"model": "fake", "input": ["a", "b c"]})
    health = client.get("/health").json()
    states = {m["name"]: m["state"] for m in health["models"]}
    assert states["fake:latest"] == "ready"
    text = client.get("/metrics").text
    assert 'embedserve_http_responses_total{path="/api/embed",status="200"}' in text
    assert "embedserve_http_request_duration_seconds_bucket" in text
    assert 'embedserve_queue_depth{model="fake:latest"} 0' in text
    assert 'embedserve_batch_padded_tokens_total{model="fake:latest"}' in text
    assert 'embedserve_batch_real_tokens_total{model="fake:latest"}' in text
    assert "embedserve_batch_size_bucket" in text


def test_num_ctx_narrows_the_window(client, world) -> None:
    """Ollama's integration test: num_ctx 3 keeps [CLS] why [SEP]; truncate:false errors."""
    r = client.post(
        "/api/embed",
        json={"model": "fake", "input": "why is the sky blue?", "options": {"num_ctx": 3}},
    )
    assert r.status_code == 200 and r.json()["prompt_eval_count"] == 3
    why = client.post("/api/embed", json={"model": "fake", "input": "why"}).json()["embeddings"][0]
    assert np.allclose(r.json()["embeddings"][0], why, atol=1e-6)
    r = client.post(
        "/api/embed",
        json={
            "model": "fake",
            "input": "why is the sky blue?",
            "truncate": False,
            "options": {"num_ctx": 3},
        },
    )
    assert (r.status_code, r.json()) == (
        400,
        {"error": "the input length exceeds the context length"},
    )
    r = client.post("/api/embed", json={"model": "fake", "input": "why", "options": {"num_ctx": 1}})
    assert (r.status_code, r.json()) == (
        400,
        {"error": "input after truncation exceeds maximum context length"},
    )
