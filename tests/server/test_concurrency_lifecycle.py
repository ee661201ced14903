"""Batching across concurrent clients, queue limits, engine crashes, keep_alive and LRU over HTTP."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime

import httpx
import numpy as np
import orjson
import pytest
from serverkit import FakeLoader, FakeStore, serve, settings

from embedserve.server.app import create_app

BUSY = "server busy, please try again.  maximum pending requests exceeded"


async def _many(url: str, bodies: list[dict], path: str = "/api/embed") -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        return await asyncio.gather(*(client.post(path, json=b) for b in bodies))


def test_concurrent_clients_get_their_own_vectors_and_batches_merge() -> None:
    store = FakeStore()
    loader = FakeLoader(store, delay_per_batch=0.02)
    # cache off: the same texts come back on purpose, to watch the batcher merge them
    with serve(create_app(settings(cache_mb=0), loader=loader, store=store)) as url:
        texts = [f"text number {i} " + "pad " * (i % 7) for i in range(48)]
        singles = []
        with httpx.Client(base_url=url) as c:
            for t in texts:
                singles.append(
                    c.post("/api/embed", json={"model": "fake", "input": t}).json()["embeddings"][0]
                )
            sizes_before = len(loader.engines[0].batches)
        bodies = [{"model": "fake", "input": t} for t in texts]
        bodies += [{"model": "fake", "input": texts[i : i + 5]} for i in range(0, 40, 5)]
        responses = asyncio.run(_many(url, bodies))
    assert all(r.status_code == 200 for r in responses)
    for t, r, single in zip(texts, responses, singles):
        assert np.allclose(r.json()["embeddings"][0], single, atol=1e-6), t
    for k, r in enumerate(responses[len(texts) :]):
        assert np.allclose(r.json()["embeddings"], singles[k * 5 : k * 5 + 5], atol=1e-6)
    concurrent_batches = loader.engines[0].batches[sizes_before:]
    assert sum(concurrent_batches) == len(texts) + 40
    assert max(concurrent_batches) > 1  # requests really merged
    assert len(concurrent_batches) < len(bodies) / 2


def test_full_queue_answers_503_with_ollamas_text() -> None:
    store = FakeStore()
    loader = FakeLoader(store, delay_per_batch=0.3)
    app = create_app(settings(max_queue=4), loader=loader, store=store)
    with (
        serve(app) as url,
        httpx.Client(base_url=url) as c,
    ):  # load first so the queue is the only limit
        assert c.post("/api/embed", json={"model": "fake", "input": ""}).status_code == 200
        responses = asyncio.run(
            _many(url, [{"model": "fake", "input": f"t{i}"} for i in range(30)])
        )
        statuses = [r.status_code for r in responses]
        assert 503 in statuses and 200 in statuses and set(statuses) <= {200, 503}
        busy = next(r for r in responses if r.status_code == 503)
        assert busy.json() == {"error": BUSY}
        responses = asyncio.run(
            _many(url, [{"model": "fake", "input": f"t{i}"} for i in range(30)], "/v1/embeddings")
        )
        busy = next(r for r in responses if r.status_code == 503)
        assert busy.json()["error"]["message"] == BUSY
        with httpx.Client(base_url=url) as c:
            assert "embedserve_overloaded_total" in c.get("/metrics").text


def test_engine_crash_fails_waiters_marks_failed_and_reloads() -> None:
    store = FakeStore()
    crash = {"on": False}

    def fail(batch) -> None:
        if crash["on"]:
            time.sleep(0.1)  # let other requests queue behind the crashing batch
            raise RuntimeError("onnxruntime exploded")

    loader = FakeLoader(store, fail=fail)
    with (
        serve(create_app(settings(), loader=loader, store=store)) as url,
        httpx.Client(base_url=url, timeout=10) as c,
    ):
        assert c.post("/api/embed", json={"model": "fake", "input": "warm"}).status_code == 200
        crash["on"] = True
        t0 = time.monotonic()
        responses = asyncio.run(
            _many(url, [{"model": "fake", "input": f"x{i}"} for i in range(10)])
        )
        assert time.monotonic() - t0 < 5  # nobody hangs
        assert all(r.status_code == 500 for r in responses)
        assert "onnxruntime exploded" in responses[0].json()["error"]
        health = c.get("/health").json()
        assert health["status"] == "degraded"
        assert health["models"] == [
            {"name": "fake:latest", "state": "failed", "error": "onnxruntime exploded"}
        ]
        crash["on"] = False
        r = c.post("/api/embed", json={"model": "fake", "input": "again"})
        assert r.status_code == 200
        assert loader.loads == ["fake:latest", "fake:latest"]  # reloaded
        assert c.get("/health").json()["models"][0]["state"] == "ready"


def _ps(c: httpx.Client) -> dict[str, dict]:
    return {m["name"]: m for m in c.get("/api/ps").json()["models"]}


def _wait_gone(c: httpx.Client, name: str, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if name not in _ps(c):
            return True
        time.sleep(0.05)
    return False


def test_keep_alive_semantics() -> None:
    store = FakeStore(installed=("a", "b", "c"))
    loader = FakeLoader(store)
    with (
        serve(create_app(settings(keep_alive=300.0), loader=loader, store=store)) as url,
        httpx.Client(base_url=url) as c,
    ):
        c.post("/api/embed", json={"model": "a", "input": "x"})
        expires = datetime.fromisoformat(_ps(c)["a:latest"]["expires_at"])
        assert 250 < expires.timestamp() - time.time() < 310  # default 5m
        c.post("/api/embed", json={"model": "a", "input": "x", "keep_alive": -1})
        assert datetime.fromisoformat(_ps(c)["a:latest"]["expires_at"]).year > 2200
        c.post("/api/embed", json={"model": "a", "input": "x"})  # omitted: keeps forever
        assert datetime.fromisoformat(_ps(c)["a:latest"]["expires_at"]).year > 2200
        c.post("/api/embed", json={"model": "a", "input": "x", "keep_alive": 1e300})
        assert datetime.fromisoformat(_ps(c)["a:latest"]["expires_at"]).year > 2200
        c.post("/api/embed", json={"model": "a", "input": "x", "keep_alive": "99999999999h"})
        assert c.get("/api/ps").status_code == 200
        c.post("/api/embed", json={"model": "a", "input": "x", "keep_alive": 0})
        assert _wait_gone(c, "a:latest")
        c.post("/api/embed", json={"model": "b", "input": "", "keep_alive": "300ms"})
        assert "b:latest" in _ps(c)
        assert _wait_gone(c, "b:latest")
        c.post("/api/embeddings", json={"model": "c", "prompt": "", "keep_alive": 0})
        assert _wait_gone(c, "c:latest")
        assert loader.loads == ["a:latest", "b:latest", "c:latest"]


def test_lru_eviction_past_max_loaded_models() -> None:
    store = FakeStore(installed=("a", "b", "c"))
    loader = FakeLoader(store)
    with (
        serve(create_app(settings(max_loaded_models=2), loader=loader, store=store)) as url,
        httpx.Client(base_url=url) as c,
    ):
        c.post("/api/embed", json={"model": "a", "input": "x"})
        c.post("/api/embed", json={"model": "b", "input": "x"})
        assert c.post("/api/embed", json={"model": "missing", "input": "x"}).status_code == 404
        assert set(_ps(c)) == {"a:latest", "b:latest"}  # a missing model evicts nothing
        c.post("/api/embed", json={"model": "a", "input": "y"})  # a is now most recent
        c.post("/api/embed", json={"model": "c", "input": "x"})
        assert set(_ps(c)) == {"a:latest", "c:latest"}  # b was least recently used


def test_concurrent_first_requests_load_once() -> None:
    store = FakeStore()
    loader = FakeLoader(store)
    loader.delay = 0.2
    with serve(create_app(settings(), loader=loader, store=store)) as url:
        responses = asyncio.run(_many(url, [{"model": "fake", "input": f"t{i}"} for i in range(8)]))
    assert all(r.status_code == 200 for r in responses)
    assert loader.loads == ["fake:latest"]


@pytest.mark.parametrize("path", ["/api/embed", "/v1/embeddings"])
def test_client_errors_never_500(path: str) -> None:
    store = FakeStore()
    with serve(create_app(settings(), loader=FakeLoader(store), store=store)) as url:
        junk = [
            None,
            1,
            "s",
            [],
            {},
            [[]],
            {"input": {"x": 1}},
            {"model": None},
            {"model": ["x"]},
            {"model": "fake", "input": "x", "dimensions": "3"},
            {"model": "fake", "input": "x", "dimensions": 1.5},
            {"model": "fake", "input": "x", "options": []},
            {"model": "fake", "input": "x", "keep_alive": "5 minutes"},
            {"model": "fake", "input": "x", "keep_alive": {}},
        ]
        if path == "/v1/embeddings":
            junk.append({"model": "fake", "input": "x", "encoding_format": 3})
        with httpx.Client(base_url=url) as c:
            for body in junk:
                r = c.post(path, content=orjson.dumps(body))
                assert r.status_code < 500, (body, r.status_code, r.text)


def test_delete_while_in_flight_lets_the_request_finish() -> None:
    store = FakeStore(installed=("fake",))
    loader = FakeLoader(store, delay_per_batch=0.5)
    with serve(create_app(settings(), loader=loader, store=store)) as url:

        async def scenario() -> tuple[httpx.Response, httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=10) as c:
                await c.post("/api/embed", json={"model": "fake", "input": ""})
                slow = asyncio.ensure_future(
                    c.post("/api/embed", json={"model": "fake", "input": "in flight"})
                )
                await asyncio.sleep(0.2)
                deleted = await c.request("DELETE", "/api/delete", json={"model": "fake"})
                return await slow, deleted

        slow, deleted = asyncio.run(scenario())
        assert slow.status_code == 200 and len(slow.json()["embeddings"]) == 1
        assert deleted.status_code == 200
        with httpx.Client(base_url=url) as c:
            assert _ps(c) == {}
            assert c.post("/api/embed", json={"model": "fake", "input": "x"}).status_code == 404


def test_unexpected_load_failure_is_one_clean_500_and_retried() -> None:
    store = FakeStore()
    loader = FakeLoader(store)
    calls = {"n": 0}

    def flaky(name: str):
        calls["n"] += 1
        if calls["n"] == 1:
            raise FileNotFoundError(2, "No such file or directory", "/models/graph.onnx")
        return loader(name)

    with (
        serve(create_app(settings(), loader=flaky, store=store)) as url,
        httpx.Client(base_url=url) as c,
    ):
        r = c.post("/api/embed", json={"model": "fake", "input": "x"})
        assert r.status_code == 500
        assert "loading model 'fake:latest' failed" in r.json()["error"]
        assert c.get("/health").json()["models"][0]["state"] == "failed"
        assert c.post("/api/embed", json={"model": "fake", "input": "x"}).status_code == 200


async def _until(condition, what: str, seconds: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Poll ``condition()`` (sync or async) until true; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.02)


async def _at_least(client: httpx.AsyncClient, series: str, n: float) -> bool:
    """Whether the /metrics line ``series`` (labels included) reads ``n`` or more."""
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1]) >= n
    return False


def test_a_client_that_hangs_up_has_its_queued_texts_dropped() -> None:
    """Waits on states, not on time: the engine is held inside "first" until the abandoned request
    is known to be queued and the server has seen its client go (its 499 is counted)."""
    entered, gate = threading.Event(), threading.Event()

    def hold(batch: object) -> None:  # the engine blocks in its first batch until released
        if not gate.is_set():
            entered.set()
            gate.wait(60)

    store = FakeStore()
    loader = FakeLoader(store, fail=hold)
    with serve(create_app(settings(), loader=loader, store=store)) as url:
        with httpx.Client(base_url=url) as c:  # load the model (an empty input runs no batch)
            assert c.post("/api/embed", json={"model": "fake", "input": ""}).status_code == 200
        engine = loader.engines[0]

        async def scenario() -> int:
            async with httpx.AsyncClient(base_url=url, timeout=60) as keeper:
                busy = asyncio.ensure_future(  # occupies the engine until the gate opens
                    keeper.post("/api/embed", json={"model": "fake", "input": "first"})
                )
                await _until(entered.is_set, '"first" is in the engine')
                quitter = httpx.AsyncClient(base_url=url, timeout=60)
                abandoned = asyncio.ensure_future(
                    quitter.post("/api/embed", json={"model": "fake", "input": ["a", "b", "c"]})
                )
                depth = 'embedserve_queue_depth{model="fake:latest"}'
                await _until(lambda: _at_least(keeper, depth, 3), "the three texts are queued")
                abandoned.cancel()  # hang up while queued
                with pytest.raises(asyncio.CancelledError):
                    await abandoned
                await quitter.aclose()
                gone = 'embedserve_http_responses_total{path="/api/embed",status="499"}'
                await _until(lambda: _at_least(keeper, gone, 1), "the server saw the client go")
                gate.set()
                first = await busy
                later = await keeper.post("/api/embed", json={"model": "fake", "input": "after"})
                assert later.status_code == 200
                return first.status_code

        try:
            assert asyncio.run(scenario()) == 200
        finally:
            gate.set()
    assert engine.batches == [1, 1]  # "first" and "after"; the three abandoned texts never ran
