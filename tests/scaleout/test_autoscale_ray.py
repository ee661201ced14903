"""``serve --ray --autoscale 1:2``: load adds a replica, and its end takes it away again.

The autoscaler is tuned through the same knobs ``serve --ray`` exposes (``--autoscale-target 2
--upscale-delay 1 --downscale-delay 3 --autoscale-window 2``) so it reacts within seconds; twelve
clients keep ~12 requests in flight, six times what one replica should hold."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from raykit import FileFakeStore, LoaderFactory, StoreFactory
from serverkit import settings


@pytest.fixture(scope="module")
def url(ray_cluster: Any, serve_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from ray import serve

    from embedserve.ray.app import APP_NAME, Plan
    from embedserve.ray.serving import deploy, parse_autoscale

    path = str(tmp_path_factory.mktemp("fake-store") / "store.json")
    FileFakeStore(path, installed=("fake",))
    scale = parse_autoscale("1:2", target=2, upscale_delay=1, downscale_delay=3, window=2)
    deploy(
        settings(port=serve_port),
        Plan(autoscale=scale),
        loader_factory=LoaderFactory(path, delay_per_batch=0.05),  # each batch holds the engine 50 ms
        store_factory=StoreFactory(path),
    )
    try:
        yield f"http://127.0.0.1:{serve_port}"
    finally:
        serve.delete(APP_NAME)


def _running() -> int:
    from ray import serve

    from embedserve.ray.app import APP_NAME

    states = serve.status().applications[APP_NAME].deployments["replica"].replica_states
    return int(states.get("RUNNING", 0))


def _reported(client: httpx.Client) -> set[str]:
    return {r["id"] for r in client.get("/health").json()["replicas"]}


def _wait(what: str, cond: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, f"{what} within {seconds:.0f} s"
        time.sleep(0.5)


def test_load_adds_a_replica_and_its_end_removes_it(url: str) -> None:
    client = httpx.Client(base_url=url, timeout=60)
    assert client.post("/api/embed", json={"model": "fake", "input": "warm"}).status_code == 200
    _wait("one replica reports", lambda: len(_reported(client)) == 1, 30)
    assert _running() == 1
    first = _reported(client)
    statuses: list[int] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            n = 0
            while not stop.is_set():
                n += 1
                r = c.post("/api/embed", json={"model": "fake", "input": [f"t {worker} {n}", "x"]})
                statuses.append(r.status_code)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    try:
        _wait("Serve starts a second replica under load", lambda: _running() == 2, 90)
        _wait("the new replica reports to /health", lambda: len(_reported(client)) == 2, 30)
        assert first < _reported(client)  # the first one stays; one more joins it
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert statuses and set(statuses) == {200}  # scaling up loses no request
    _wait("Serve removes the extra replica once the load ends", lambda: _running() == 1, 90)
    _wait("/health lists one replica again", lambda: len(_reported(client)) == 1, 30)
    assert client.post("/api/embed", json={"model": "fake", "input": "after"}).status_code == 200
    client.close()
