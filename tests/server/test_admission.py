"""Admission control: embed requests are refused before their body is read when the queues are
full, refusals are paced by a token bucket, and the work already queued is still served."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from serverkit import FakeLoader, FakeStore, serve, settings

from embedserve.server.app import create_app
from embedserve.service.admission import Admission

BUSY = "server busy, please try again.  maximum pending requests exceeded"


@dataclass
class Q:
    depth: int
    last_n: int = 1
    max_queue: int = 10
    state: str = "ready"


def test_saturated_only_when_every_ready_queue_is_too_full_for_a_request_like_its_last() -> None:
    queues = [Q(depth=9, last_n=1)]
    adm = Admission(lambda: queues)
    assert not adm.saturated()  # 9 + 1 fits in 10
    queues[0].last_n = 2
    assert adm.saturated()  # 9 + 2 does not
    queues.append(Q(depth=0))
    assert not adm.saturated()  # another model has room: the batcher's own check decides
    queues[1].state = "loading"
    assert adm.saturated()
    assert not Admission(lambda: []).saturated()  # nothing resident: never refused up front


def test_refusals_beyond_the_rate_wait_their_turn() -> None:
    now = [0.0]
    adm = Admission(lambda: [], rate=100.0, burst=5.0, clock=lambda: now[0])
    assert [adm.refusal_delay() for _ in range(5)] == [0.0] * 5  # the burst goes at once
    delays = [adm.refusal_delay() for _ in range(3)]
    assert delays == [0.01, 0.02, 0.03]  # then one every 1/rate seconds
    now[0] = 1.0  # a quiet second refills the bucket
    assert adm.refusal_delay() == 0.0
    assert adm.refused == 9


async def _post_many(url: str, n: int, path: str, body: bytes) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await asyncio.gather(
            *(client.post(path, content=body, headers={"content-type": "application/json"}) for _ in range(n))
        )


def test_full_queue_refuses_before_parsing_and_still_serves_the_queued() -> None:
    store = FakeStore()
    loader = FakeLoader(store, delay_per_batch=2.0)
    app = create_app(settings(max_queue=4), loader=loader, store=store)
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert c.post("/api/embed", json={"model": "fake", "input": ""}).status_code == 200

        async def scenario() -> tuple[list[httpx.Response], list[httpx.Response], list[httpx.Response]]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                def send(i: int) -> asyncio.Future[httpx.Response]:
                    body = {"model": "fake", "input": [f"a{i}", f"b{i}"]}
                    return asyncio.ensure_future(client.post("/api/embed", json=body))

                async def until(cond: Callable[[], bool]) -> None:
                    deadline = time.monotonic() + 10
                    while not cond():
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.01)

                (batcher,) = app.state.embedserve.manager.batchers()
                first = [send(0)]
                await until(lambda: batcher.last_n == 2 and batcher.depth == 0)  # engine busy 2 s ...
                first += [send(1), send(2)]
                await until(lambda: batcher.depth == 4)  # ... while two more fill the queue (4 of 4)
                assert app.state.embedserve.admission.saturated()
                # not even JSON: a parsed request would answer 400, a refused one 503
                garbage = await _post_many(url, 5, "/api/embed", b"{not json")
                openai = await _post_many(url, 2, "/v1/embeddings", b"[")
                return list(await asyncio.gather(*first)), garbage, openai

        accepted, garbage, openai = asyncio.run(scenario())
        assert [r.status_code for r in garbage] == [503] * 5
        assert garbage[0].json() == {"error": BUSY}
        assert garbage[0].headers["retry-after"] == "1"
        assert [r.status_code for r in openai] == [503] * 2
        assert openai[0].json()["error"]["message"] == BUSY
        # the requests that were queued before the flood are all answered
        assert [r.status_code for r in accepted] == [200, 200, 200]
        # once the queue drains, the same server parses (and rejects) bad JSON again
        time.sleep(0.5)
        assert c.post("/api/embed", content=b"{not json").status_code == 400
        assert c.post("/api/embed", json={"model": "fake", "input": "x"}).status_code == 200
