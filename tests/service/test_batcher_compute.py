"""The batcher's compute hook: each request's share of batch wall time, split by tokens."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from embedserve.engine.fake import FakeEngine
from embedserve.errors import EngineError, InputTooLong
from embedserve.service.batcher import Batcher


class Timed(FakeEngine):
    """Sleeps 1 ms per token in the batch, and records each batch's wall time."""

    def __init__(self) -> None:
        super().__init__("timed:latest", dim=8, max_tokens=64)
        self.walls: list[float] = []

    def embed_ids(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        t0 = time.perf_counter()
        time.sleep(0.001 * sum(len(ids) for ids in batch))
        out = super().embed_ids(batch)
        self.walls.append(time.perf_counter() - t0)
        return out


def test_shares_add_up_to_the_engine_time_and_follow_tokens() -> None:
    engine = Timed()
    pool = ThreadPoolExecutor(2)
    shares: dict[str, float] = {}

    async def main() -> None:
        b = Batcher(engine, pool, batch_tokens=4096, max_batch=64)
        long_text = " ".join(["w"] * 30)  # 32 tokens
        short_text = "w"  # 3 tokens
        futs = [
            b.submit([long_text] * 2, on_compute=lambda s: shares.__setitem__("long", s)),
            b.submit([short_text], on_compute=lambda s: shares.__setitem__("short", s)),
            b.submit(["a b c"], on_compute=lambda s: shares.__setitem__("mid", s)),
        ]
        await asyncio.gather(*futs)
        await b.close()

    asyncio.run(main())
    assert set(shares) == {"long", "short", "mid"}
    assert sum(shares.values()) == pytest.approx(sum(engine.walls), rel=0.02)
    # within a batch the split is by tokens: 64 : 3 : 5 when all three share one batch
    if len(engine.walls) == 1:
        assert shares["long"] / shares["short"] == pytest.approx(64 / 3, rel=0.01)
        assert shares["mid"] / shares["short"] == pytest.approx(5 / 3, rel=0.01)
    assert shares["long"] > shares["mid"] > shares["short"] > 0


def test_the_hook_runs_once_on_failure_and_on_crash() -> None:
    engine = Timed()
    pool = ThreadPoolExecutor(2)
    calls: list[float] = []

    async def main() -> None:
        b = Batcher(engine, pool)
        with pytest.raises(InputTooLong):
            await b.submit([" ".join(["w"] * 100)], truncate=False, on_compute=calls.append)
        assert calls == [0.0]  # failed in tokenisation: nothing ran, reported once
        await b.close()
        boom = FakeEngine(fail=lambda batch: (_ for _ in ()).throw(RuntimeError("boom")))
        b2 = Batcher(boom, pool)
        with pytest.raises(EngineError):
            await b2.submit(["x"], on_compute=calls.append)
        await b2.close()

    asyncio.run(main())
    assert calls == [0.0, 0.0]
