"""The batcher without HTTP: token budget, length sorting, order of results, failures, metrics."""

from __future__ import annotations

import asyncio
import threading
import time
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


def test_patience_merges_clients_that_come_back_after_a_window() -> None:
    """Without patience the first returning client runs alone and the rest wait behind it: the
    batch sizes would be [8, 1, 7]; with it the returning clients are one batch again."""
    engine = Recording(delay_per_batch=0.2)  # patience: up to 0.2 s for the 8 to come back
    pool = ThreadPoolExecutor(2)

    async def main() -> None:
        b = Batcher(engine, pool, batch_tokens=10_000, patience=1.0, max_patience=0.5)
        await asyncio.gather(*(b.submit([_text(3, i)]) for i in range(8)))
        again = []
        for i in range(8):  # the same clients come back a few milliseconds apart
            again.append(b.submit([_text(3, 100 + i)]))
            await asyncio.sleep(0.003)
        results = await asyncio.gather(*again)
        assert all(vectors.shape == (1, 16) for vectors, _ in results)
        await b.close()

    run(main())
    assert [len(x) for x in engine.lengths] == [8, 8]


def test_patience_is_bounded_when_the_clients_do_not_come_back() -> None:
    engine = Recording(delay_per_batch=0.05)
    pool = ThreadPoolExecutor(2)

    async def main() -> float:
        b = Batcher(engine, pool, patience=1.0, max_patience=0.2)
        await asyncio.gather(*(b.submit([_text(3, i)]) for i in range(8)))
        t0 = time.perf_counter()
        await asyncio.wait_for(b.submit(["only one came back"]), 5)  # waits 0.05 s at most
        elapsed = time.perf_counter() - t0
        await b.close()
        return elapsed

    assert run(main()) < 2.0
    assert [len(x) for x in engine.lengths] == [8, 1]


def test_a_request_is_answered_when_its_batch_is_done_not_its_window() -> None:
    """The budget cuts one window into a batch of short texts and a batch of a long one; the short
    text's answer must not wait for the long text's batch."""
    release = threading.Event()

    def hold_long(batch: Sequence[Sequence[int]]) -> None:
        if max(len(ids) for ids in batch) > 20:
            release.wait(5)

    engine = Recording(fail=hold_long)
    pool = ThreadPoolExecutor(2)

    async def main() -> None:
        b = Batcher(engine, pool, batch_tokens=40)  # 5 + 32 tokens: 2 x 32 > 40, two batches
        short = b.submit(["a b c"])
        long_ = b.submit([_text(30, 1)])
        try:
            await asyncio.wait_for(asyncio.shield(short), 2)
            assert not long_.done()
        finally:
            release.set()
        await asyncio.wait_for(long_, 5)
        await b.close()

    run(main())
    assert sorted(len(x) for x in engine.lengths) == [1, 1]  # the window really was two batches
