"""/openapi.json: every route is in it, it is a valid OpenAPI 3.1 document, and a live server keeps
its promises under schemathesis (bounded examples, fake engine): no 5xx, every status documented,
every 4xx in the documented error body."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serverkit import FakeLoader, FakeStore, serve, settings

from embedserve.config import Settings
from embedserve.server.app import create_app
from embedserve.server.openapi import OLLAMA_ERROR, Op, document, route, undocumented


def _app(home: Path | None = None):  # type: ignore[no-untyped-def]
    store = FakeStore(installed=("fake", "all-minilm"), catalogue=("pullable", "fake", "all-minilm"))
    s = settings() if home is None else Settings(home=home)
    return create_app(s, loader=FakeLoader(store), store=store)


def test_every_route_is_documented_with_its_methods() -> None:
    app = _app()
    assert undocumented(app.routes) == []
    doc = document(app.routes, version="test")
    for r in app.routes:
        path = r.path.replace("{model:path}", "{model}")  # type: ignore[attr-defined]
        for method in r.methods:  # type: ignore[attr-defined]
            assert method.lower() in doc["paths"][path], (path, method)
    assert doc["openapi"] == "3.1.0"


def test_an_undocumented_route_is_caught() -> None:
    from starlette.routing import Route

    async def endpoint(request):  # type: ignore[no-untyped-def]
        raise AssertionError

    routes = [route("/a", endpoint, ["GET"], Op("a")), Route("/b", endpoint, methods=["GET"])]
    assert undocumented(routes) == ["/b"]
    assert "/b" not in document(routes, version="x")["paths"]


def test_document_is_valid_openapi_and_served(tmp_path: Path) -> None:
    from openapi_spec_validator import validate

    with serve(_app(tmp_path)) as url:
        resp = httpx.get(f"{url}/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    validate(doc)  # raises on an invalid document
    embed = doc["paths"]["/api/embed"]["post"]
    assert embed["responses"]["400"]["content"]["application/json"]["schema"] == OLLAMA_ERROR
    assert "error" in doc["paths"]["/v1/embeddings"]["post"]["responses"]["400"]["content"][
        "application/json"]["schema"]["properties"]
    assert set(doc["paths"]["/v1/models/{model}"]) == {"get", "head"}  # Starlette answers HEAD for GET


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(_app(tmp_path_factory.mktemp("home"))) as url:
        yield url


def test_schemathesis_live_server(live_url: str, tmp_path: Path) -> None:
    """schemathesis (its CLI, bounded: a fixed seed and a cap on examples per operation) sends
    valid and invalid requests to every documented operation of a live server: each answer has a
    documented status, content type and body (the documented error body for every 4xx), and none
    is a 5xx."""
    import shutil
    import subprocess
    import sys

    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli, "schemathesis is in the test extra"
    checks = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
    proc = subprocess.run(
        [cli, "run", f"{live_url}/openapi.json", "--checks", checks, "--max-examples", "10",
         "--seed", "20261202", "--workers", "1", "--generation-database", "none", "--no-color",
         "--request-timeout", "10", "--phases", "examples,coverage,fuzzing", "--max-failures", "50",
         "--suppress-health-check", "all", "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,  # its cache stays out of the tree
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-12000:]
    assert "No issues found" in out or "passed" in out.lower(), out[-4000:]
