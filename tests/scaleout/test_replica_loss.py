"""A replica's process killed under load: no accepted request is lost, and Ray brings it back."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from raykit import FileFakeStore, LoaderFactory, StoreFactory
from serverkit import settings

from embedserve.ray.wire import REPLICA_LOST


@pytest.fixture(scope="module")
def url(ray_cluster: Any, serve_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from ray import serve

    from embedserve.ray.app import APP_NAME, Plan
    from embedserve.ray.serving import deploy

    path = str(tmp_path_factory.mktemp("fake-store") / "store.json")
    FileFakeStore(path, installed=("fake",))
    loader = LoaderFactory(path, delay_per_batch=0.02)  # each batch holds the engine 20 ms
    deploy(settings(port=serve_port), Plan(replicas=2), loader_factory=loader, store_factory=StoreFactory(path))
    try:
        yield f"http://127.0.0.1:{serve_port}"
    finally:
        serve.delete(APP_NAME)


def _replicas(client: httpx.Client) -> dict[str, int]:
    return {r["id"]: r["pid"] for r in client.get("/health").json()["replicas"]}


def test_killed_replica_loses_no_request_and_comes_back(url: str) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(4):  # both replicas hold the model before the load starts
            assert client.post("/api/embed", json={"model": "fake", "input": "warm"}).status_code == 200
        deadline = time.monotonic() + 30
        while len(_replicas(client)) < 2:
            assert time.monotonic() < deadline, "two replicas never reported"
            time.sleep(0.5)
        before = _replicas(client)
    outcomes: list[tuple[int, str]] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            n = 0
            while not stop.is_set():
                n += 1
                r = c.post("/api/embed", json={"model": "fake", "input": [f"text {worker} {n}", "x y"]})
                body = r.json()
                ok = r.status_code == 200 and len(body["embeddings"]) == 2
                outcomes.append((r.status_code if ok or r.status_code != 200 else -1, str(body.get("error", ""))))

    threads = [threading.Thread(target=load, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    victim_id, victim_pid = sorted(before.items())[0]
    os.kill(victim_pid, signal.SIGKILL)
    time.sleep(4.0)
    stop.set()
    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads), "a request hung"
    statuses = {s for s, _ in outcomes}
    assert statuses <= {200, 503}, outcomes
    assert all(e == REPLICA_LOST for s, e in outcomes if s == 503)
    assert sum(s == 200 for s, _ in outcomes) > 0.95 * len(outcomes)
    with httpx.Client(base_url=url, timeout=60) as client:
        deadline = time.monotonic() + 90
        while True:
            now = _replicas(client)
            if len(now) == 2 and victim_pid not in now.values():
                break
            assert time.monotonic() < deadline, f"the killed replica never came back: {now}"
            time.sleep(1.0)
        assert victim_id not in now  # a new replica, not the old one
        r = client.post("/api/embed", json={"model": "fake", "input": "after"})
        assert r.status_code == 200
