"""tests/server/test_http_api.py's cases, unchanged, against ``serve --ray``: the same app as a Ray
Serve ingress, two replicas on two nodes, a fake engine, one store shared by every process."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from raykit import FileFakeStore, LoaderFactory, StoreFactory
from serverkit import FakeLoader, settings

_spec = importlib.util.spec_from_file_location(
    "single_process_http_api", Path(__file__).parents[1] / "server" / "test_http_api.py"
)
assert _spec is not None and _spec.loader is not None
_single = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_single)
globals().update({k: v for k, v in vars(_single).items() if k.startswith("test_")})
client = _single.client


@pytest.fixture(scope="module")
def world(
    ray_cluster: Any, serve_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, FileFakeStore, FakeLoader]]:
    from ray import serve

    from embedserve.ray.app import APP_NAME, Plan
    from embedserve.ray.serving import deploy

    path = str(tmp_path_factory.mktemp("fake-store") / "store.json")
    store = FileFakeStore(path, installed=("fake", "other"), catalogue=("newmodel",))
    cfg = settings(max_inputs=50, max_body_bytes=20_000, port=serve_port)
    deploy(cfg, Plan(replicas=2), loader_factory=LoaderFactory(path), store_factory=StoreFactory(path))
    try:
        yield f"http://127.0.0.1:{serve_port}", store, FakeLoader(store)
    finally:
        serve.delete(APP_NAME)


def test_replicas_on_two_nodes_report_to_health(client: httpx.Client) -> None:
    client.post("/api/embed", json={"model": "fake", "input": ["a", "b"]})
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert len(health["replicas"]) == 2
    assert len({r["node"] for r in health["replicas"]}) == 2  # one replica per node
    assert all(r["threads"] == 1 and r["pid"] > 0 for r in health["replicas"])
    loaded = [m["name"] for r in health["replicas"] for m in r["models"]]
    assert "fake:latest" in loaded


def test_collections_refused_on_a_multi_node_sqlite_deployment(client: httpx.Client) -> None:
    for method, path in (("GET", "/api/collections"), ("POST", "/api/collections/docs/query")):
        r = client.request(method, path, json={})
        assert r.status_code == 503
        error = r.json()["error"]
        assert "2 nodes" in error and "EMBEDSERVE_DATABASE_URL" in error
