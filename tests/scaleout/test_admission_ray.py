"""Admission control under ``serve --ray``: when the replicas' queues are full the ingress answers
Ollama's 503 with Retry-After *before reading the body*, as one process does, and what the
replicas accepted is still answered.

Each batch holds a replica's engine 4 s and a queue takes 4 inputs: a wave of 2-input requests
fills every replica that holds the model (Serve routes a model's requests to its holders), and
the replicas refuse the rest themselves, which tells the ingress their queues are full. Then
bodies that are not even JSON get 503, not 400: nothing parsed them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from raykit import FileFakeStore, LoaderFactory, StoreFactory
from serverkit import settings

from embedserve.server.errors import OVERLOADED_MESSAGE


@pytest.fixture(scope="module")
def url(ray_cluster: Any, serve_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from ray import serve

    from embedserve.ray.app import APP_NAME, Plan
    from embedserve.ray.serving import deploy

    path = str(tmp_path_factory.mktemp("fake-store") / "store.json")
    FileFakeStore(path, installed=("fake",))
    deploy(
        settings(port=serve_port, max_queue=4),
        Plan(replicas=2),
        loader_factory=LoaderFactory(path, delay_per_batch=4.0),
        store_factory=StoreFactory(path),
    )
    try:
        yield f"http://127.0.0.1:{serve_port}"
    finally:
        serve.delete(APP_NAME)


async def _garbage(client: httpx.AsyncClient, path: str, n: int) -> list[httpx.Response]:
    headers = {"content-type": "application/json"}
    return list(await asyncio.gather(*(client.post(path, content=b"{not json", headers=headers) for _ in range(n))))


def test_full_replica_queues_refuse_before_parsing_and_accepted_requests_complete(url: str) -> None:
    with httpx.Client(base_url=url, timeout=60) as c:
        assert c.post("/api/embed", json={"model": "fake", "input": ""}).status_code == 200  # loads it
        assert c.post("/api/embed", content=b"{not json").status_code == 400  # queues empty: parsed

    async def scenario() -> tuple[list[httpx.Response], list[httpx.Response], list[httpx.Response]]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            wave = []
            for i in range(20):  # spaced, so they queue behind busy engines instead of sharing a window
                body = {"model": "fake", "input": [f"a{i}", f"b{i}"]}
                wave.append(asyncio.ensure_future(client.post("/api/embed", json=body)))
                await asyncio.sleep(0.03)
            deadline = time.monotonic() + 3  # the replicas' own refusals come back at once
            while not any(f.done() and f.result().status_code == 503 for f in wave):
                assert time.monotonic() < deadline, "no replica refused: the queues never filled"
                await asyncio.sleep(0.02)
            garbage = await _garbage(client, "/api/embed", 5)
            openai = await _garbage(client, "/v1/embeddings", 2)
            return list(await asyncio.gather(*wave)), garbage, openai

    answered, garbage, openai = asyncio.run(scenario())
    assert [r.status_code for r in garbage] == [503] * 5, [r.text for r in garbage]
    assert garbage[0].json() == {"error": OVERLOADED_MESSAGE}
    assert garbage[0].headers["retry-after"] == "1"
    assert [r.status_code for r in openai] == [503] * 2
    assert openai[0].json()["error"]["message"] == OVERLOADED_MESSAGE
    assert openai[0].headers["retry-after"] == "1"
    # every request of the wave is answered: vectors for the accepted, the same 503 for the refused
    codes = [r.status_code for r in answered]
    assert set(codes) == {200, 503} and codes[0] == 200, codes
    for r in answered:
        if r.status_code == 200:
            assert len(r.json()["embeddings"]) == 2
        else:
            assert r.json() == {"error": OVERLOADED_MESSAGE} and r.headers["retry-after"] == "1"
    # drained: the ingress hears of it (replies, the next report) and parses again
    with httpx.Client(base_url=url, timeout=60) as c:
        deadline = time.monotonic() + 15
        while (status := c.post("/api/embed", content=b"{not json").status_code) == 503:
            assert time.monotonic() < deadline, "the ingress kept refusing after the queues drained"
            time.sleep(0.2)
        assert status == 400
        assert c.post("/api/embed", json={"model": "fake", "input": "x"}).status_code == 200
        metrics = c.get("/metrics").text
    assert any(line.startswith("embedserve_overloaded") and 'model="*"' in line for line in metrics.splitlines())
