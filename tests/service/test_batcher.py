"""The batcher without HTTP: token budget, length sorting, order of results, failures, metrics."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from embedserve.engine.fake import FakeEngine
from embedserve.errors import EngineError, InputTooLong, Overloaded
from embedserve.service.batcher import OVERLOADED_MESSAGE, Batcher
from embedserve.service.metrics import Metrics


class Recording(FakeEngine):
    """Records the token lengths of every batch; the first batch can be held to build a queue."""

    def __init__(self, **kw) -> None:
        super().__init__("rec:latest", dim=16, max_tokens=64, **kw)
        self.lengths: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()

    def embed_ids(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        self.gate.wait(5)
        self.lengths.append([len(ids) for ids in batch])
        return super().embed_ids(batch)


def _text(n_words: int, seed: int) -> str:
    return " ".join(f"w{seed}_{k}" for k in range(n_words))


def run(coro):
    return asyncio.run(coro)


def test_budget_and_sorting_and_order() -> None:
    engine = Recording()
    pool = ThreadPoolExecutor(2)
    rng = np.random.default_rng(0)
    texts = [_text(int(rng.integers(1, 40)), i) for i in range(60)]
    metrics = Metrics()

    async def main() -> None:
        b = Batcher(engine, pool, batch_tokens=200, metrics=metrics)
        engine.gate.clear()
        first = b.submit(["hold the engine"])
        await asyncio.sleep(0.05)  # the first window is now inside the engine
        futures = [b.submit(texts[i : i + 6]) for i in range(0, 60, 6)]
        engine.gate.set()
        await first
        results = await asyncio.gather(*futures)
        for k, (vectors, tokens) in enumerate(results):
            chunk = texts[k * 6 : k * 6 + 6]
            ids = engine.tokenize(chunk)
            assert tokens == sum(len(t) for t in ids)
            expected = np.stack([engine.embed_ids([t])[0] for t in ids])
            assert np.allclose(vectors, expected, atol=1e-6)  # in input order
        await b.close()

    run(main())
    merged = engine.lengths[1:]
    merged = merged[: len(merged) - 60]  # drop the reference embeds made by the test itself
    assert sum(len(b) for b in merged) == 60
    for lengths in merged:
        assert lengths == sorted(lengths)  # length-sorted
        assert len(lengths) == 1 or max(lengths) * len(lengths) <= 200  # padded-token budget
    assert len(merged) > 1  # the budget split the window
    assert metrics.batch_size.count(("rec:latest",)) == len(engine.lengths) - 60
    assert metrics.padded_tokens.get(("rec:latest",)) >= metrics.real_tokens.get(("rec:latest",))


def test_over_long_input_fails_only_its_request() -> None:
    engine = Recording()
    pool = ThreadPoolExecutor(2)

    async def main() -> None:
        b = Batcher(engine, pool)
        engine.gate.clear()
        hold = b.submit(["hold"])
        await asyncio.sleep(0.05)
        bad = b.submit(["fine", _text(100, 1)], truncate=False)
        good = b.submit(["also fine", _text(100, 2)], truncate=True)
        engine.gate.set()
        await hold
        with pytest.raises(InputTooLong):
            await bad
        vectors, tokens = await good
        assert vectors.shape == (2, 16) and tokens == 4 + 64
        await b.close()

    run(main())


def test_queue_limit_and_big_request_into_empty_queue() -> None:
    engine = Recording()
    pool = ThreadPoolExecutor(2)

    async def main() -> None:
        b = Batcher(engine, pool, max_queue=5)
        engine.gate.clear()
        hold = b.submit(["hold"])
        await asyncio.sleep(0.05)
        big = b.submit([f"t{i}" for i in range(8)])  # larger than the queue, but the queue is empty
        with pytest.raises(Overloaded) as err:
            b.submit(["one more"])
        assert str(err.value) == OVERLOADED_MESSAGE
        engine.gate.set()
        await hold
        assert (await big)[0].shape == (8, 16)
        await b.close()

    run(main())


def test_crash_fails_everyone_and_refuses_new_work() -> None:
    def fail(batch) -> None:
        raise RuntimeError("kaboom")

    engine = Recording(fail=fail)
    pool = ThreadPoolExecutor(2)
    crashed: list[BaseException] = []

    async def main() -> None:
        b = Batcher(engine, pool, on_crash=lambda _b, exc: crashed.append(exc))
        futures = [b.submit([f"t{i}", "x y"]) for i in range(5)]
        for f in futures:
            with pytest.raises(EngineError, match="kaboom"):
                await asyncio.wait_for(f, 5)
        assert b.state == "failed"
        with pytest.raises(EngineError):
            b.submit(["later"])
        await b.close()

    run(main())
    assert len(crashed) == 1


def test_close_fails_queued_requests() -> None:
    engine = Recording()
    pool = ThreadPoolExecutor(2)

    async def main() -> None:
        b = Batcher(engine, pool)
        engine.gate.clear()
        hold = b.submit(["hold"])
        await asyncio.sleep(0.05)
        queued = b.submit(["waiting"])
        await b.close()
        engine.gate.set()
        for f in (hold, queued):
            with pytest.raises(EngineError):
                await asyncio.wait_for(f, 5)

    run(main())
