"""tests/server/test_clients_real.py's cases (official ollama and openai clients, the real
all-minilm model) against ``serve --ray`` with two replicas on two nodes, plus the vectors' match
with single-process mode."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import ollama
import openai
import pytest

from embedserve.config import Settings

_spec = importlib.util.spec_from_file_location(
    "single_process_clients", Path(__file__).parents[1] / "server" / "test_clients_real.py"
)
assert _spec is not None and _spec.loader is not None
_single = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_single)
globals().update({k: v for k, v in vars(_single).items() if k.startswith("test_")})
reference = _single.reference


@pytest.fixture(scope="module")
def home(real_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ray-serve-home") / "home"
    _single._link_copy(real_home, path)
    return path


@pytest.fixture(scope="module")
def url(ray_cluster: Any, serve_port: int, home: Path) -> Iterator[str]:
    from ray import serve

    from embedserve.ray.app import APP_NAME, Plan
    from embedserve.ray.serving import deploy

    deploy(replace(Settings(), home=home, offline=True, port=serve_port), Plan(replicas=2))
    try:
        yield f"http://127.0.0.1:{serve_port}"
    finally:
        serve.delete(APP_NAME)


def test_vectors_equal_single_process(url: str, home: Path, reference: dict) -> None:
    """Both clients, through either replica, get the in-process library's vectors."""
    from embedserve.embedder import Embedder

    texts = [str(t) for t in reference["sts_texts"][:24]]
    local = Embedder("all-minilm", settings=replace(Settings(), home=home, offline=True))
    expected = local.encode(texts)
    client = ollama.Client(host=url)
    via_ollama = np.array([client.embed(model="all-minilm", input=t).embeddings[0] for t in texts])
    oai = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    via_openai = np.array(
        [d.embedding for d in oai.embeddings.create(model="all-minilm", input=texts).data]
    )
    for got in (via_ollama, via_openai):
        cos = (got * expected).sum(1) / np.linalg.norm(got, axis=1)
        assert cos.min() >= 0.99999
    served = {r["id"] for r in client._client.get("/health").json()["replicas"]}
    assert len(served) == 2
