"""Dynamic batching for one resident model.

Requests put their inputs into a bounded per-model queue and await one future each. A single
asyncio task drains the queue a *window* at a time (a bounded slice of the queue head) and hands the
window to a worker thread, which

1. tokenises each request's inputs (``truncate`` is per request; an over-long input fails only its
   own request),
2. sorts the window's inputs by token length, and
3. cuts the sorted run into batches under a padded-token budget (``longest x count <=
   batch_tokens``) and of at most ``max_batch`` inputs (an input longer than the budget goes
   alone), running ``engine.embed_ids`` on each, shortest batches first.

The window (up to ``window_items`` inputs, ~2 budgets of text) is what length sorting chooses
neighbours from; it is bounded, so an input waits at most one window behind later arrivals.

While the worker runs, new requests queue up; the next window is taken as soon as the engine is
free, so batches grow exactly while the engine is busy and a lone request never waits. Tokenisation
and inference both run off the event loop (one thread hop per window on the lean path).

*Patience*: the clients answered by a window tend to come straight back, a few hundred microseconds
to a few milliseconds apart. Taking the first of them alone would lock the batcher into a cycle of
one tiny batch and one big one (measured at 32 clients x 1 text: half the batches were singletons).
So after a window of ``n > 1`` inputs, the next window waits until ``min(n, max_batch)`` inputs are
queued, or at most ``patience`` x the last window's engine time (capped at ``max_patience``
seconds), whichever comes first. After a window of one input (a lone client) nothing waits.

Results are written into one array per request, in input order, and the request's future resolves
as soon as the batch holding its last input is done, not when the whole window is: the event loop
answers those clients (and reads their next requests) while the engine runs the window's next
batch, instead of afterwards. Inputs of one request may span batches and windows. If the engine
raises, the batcher is *crashed*: every request in the window and in the queue gets an
``EngineError``, ``state`` becomes ``"failed"`` and ``on_crash`` tells the manager, which reloads
the model on the next request. Nothing is ever left waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

from embedserve.engine.base import Engine
from embedserve.errors import EmbedServeError, EngineError, InputTooLong, InvalidInput, Overloaded
from embedserve.service.metrics import Metrics

OVERLOADED_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"


MODES = ("embed", "tokens", "query_tokens", "pairs")


class _Request:
    __slots__ = (
        "counts", "error", "future", "limit", "mode", "n", "on_compute", "out", "remaining",
        "seconds",
        "texts", "tokens", "truncate",
    )

    def __init__(
        self,
        texts: Sequence[Any],
        truncate: bool,
        limit: int,
        future: asyncio.Future[Any],
        on_compute: Callable[[float], None] | None = None,
        counts: bool = False,
        mode: str = "embed",
    ) -> None:
        self.texts = texts
        self.mode = mode  # embed: pooled vectors; tokens / query_tokens: token vectors; pairs: scores
        # dense_tokens: both
        self.truncate = truncate
        self.limit = limit  # 0: the model's window; else a smaller window (Ollama's num_ctx)
        self.future = future
        self.n = len(texts)
        self.out: Any = None  # (n, d) array; a list of (tokens, d) arrays; (n,) scores
        self.tokens = 0
        self.remaining = self.n
        self.error: BaseException | None = None
        self.seconds = 0.0  # this request's share of the engine time of the batches it was in
        self.on_compute = on_compute
        self.counts: list[int] | None = [0] * self.n if counts else None  # tokens per input

    def result(self) -> tuple[Any, ...]:
        if self.counts is None:
            return (self.out, self.tokens)
        return (self.out, self.tokens, self.counts)

    def settle(self) -> None:
        """Report the compute share once (on the event loop), when the request is done."""
        report, self.on_compute = self.on_compute, None
        if report is not None:
            report(self.seconds)


_Item = tuple[_Request, int]


def _narrow(ids: list[list[int]], idxs: list[int], limit: int, truncate: bool) -> list[list[int]]:
    out = []
    for i, t in zip(idxs, ids):
        if len(t) > limit:
            if not truncate:
                raise InputTooLong(i, len(t), limit)
            t = t[: limit - 1] + t[-1:]
        out.append(t)
    return out


class Batcher:
    """Queue + batch former + worker for one engine. Create and use it on the event loop."""

    def __init__(
        self,
        engine: Engine,
        executor: Executor,
        *,
        name: str = "",
        max_queue: int = 512,
        batch_tokens: int = 16384,
        window_items: int = 1024,
        max_batch: int = 32,
        patience: float = 0.1,
        max_patience: float = 0.01,
        metrics: Metrics | None = None,
        on_crash: Callable[[Batcher, BaseException], None] | None = None,
    ) -> None:
        self.engine = engine
        self.name = name or engine.info.name
        self.max_queue = max(1, max_queue)
        self.batch_tokens = max(1, batch_tokens)
        self.window_items = max(1, window_items)
        # inputs per batch: on CPU, 32 sorted neighbours run ~1.9x faster per text than one padded
        # batch of the whole 128-input window (measured on STS-B, all-minilm); the window still
        # gives the length sorting its choice of neighbours
        self.max_batch = max(1, max_batch)
        # a window is bounded by characters too (~4 chars/token): about two batches' worth
        self.window_chars = self.batch_tokens * 8
        self.patience = max(0.0, patience)
        self.max_patience = max(0.0, max_patience)
        self.metrics = metrics
        self.on_crash = on_crash
        self.state = "ready"  # "ready" | "failed" | "closed"
        self.last_n = 0  # inputs in the last submitted request
        self.error: BaseException | None = None
        self._executor = executor
        self._queue: deque[_Item] = deque()
        self._window: list[_Item] = []
        self._wake = asyncio.Event()
        self._busy = False
        self._want = 0  # queued inputs that wake the batcher early while it is being patient
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name=f"batcher:{self.name}")

    # -- request side -------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Inputs waiting (queued, not yet taken into a window)."""
        return len(self._queue)

    def submit(
        self,
        texts: Sequence[Any],
        truncate: bool = True,
        limit: int = 0,
        *,
        on_compute: Callable[[float], None] | None = None,
        counts: bool = False,
        mode: str = "embed",
    ) -> asyncio.Future[Any]:
        """Queue ``texts``; the future resolves to ``(vectors (n, d) float32 raw, token_count)``,
        or with ``counts`` to ``(vectors, token_count, tokens per input)`` (for the cache).

        ``mode="tokens"`` (``"query_tokens"``: a ColBERT query) resolves to a list of raw
        ``(tokens, d)`` arrays instead, ``mode="dense_tokens"`` to a list of (raw vector, raw
        token vectors) pairs from one run (``embed_both``: a multivector collection's chunks),
        ``mode="pairs"`` (texts are ``(query, document)`` tuples)
        to raw logits ``(n,)``; all modes share the queue, the windows and the token budget.

        ``limit`` (> 1) narrows the window below the model's, like Ollama's ``num_ctx``: longer
        inputs keep their first ``limit - 1`` tokens and their closing special token.

        Raises ``Overloaded`` when the queue is full (a request larger than the whole queue is still
        admitted into an empty queue, so no valid request is unservable) and ``EngineError`` when the
        batcher has crashed or closed.

        ``on_compute(seconds)``, if given, is called once on the event loop when the request is
        done (answered, failed or cancelled) with its share of the engine's wall time: each batch's
        time split over its inputs by token count, summed over the batches the request was in (a
        usage meter's hook; 0.0 if nothing ran).
        """
        if self.state != "ready":
            raise EngineError(self._dead_message())
        future: asyncio.Future[Any] = self._loop.create_future()
        n = len(texts)
        if n == 0:
            empty: Any = ([] if "tokens" in mode else np.zeros(0, np.float32) if mode == "pairs"
                          else np.zeros((0, self.engine.info.dim), np.float32))
            future.set_result((empty, 0, []) if counts else (empty, 0))
            return future
        pending = len(self._queue)
        self.last_n = n  # admission control predicts the next request's size from it
        if pending and pending + n > self.max_queue:
            if self.metrics is not None:
                self.metrics.overloaded.inc(1, (self.name,))
            raise Overloaded(OVERLOADED_MESSAGE)
        req = _Request(texts, truncate, limit, future, on_compute, counts, mode)
        if n == 1:
            self._queue.append((req, 0))
        else:
            self._queue.extend([(req, i) for i in range(n)])
        if not self._busy and len(self._queue) >= self._want:
            self._wake.set()
        return future

    async def embed(
        self, texts: Sequence[str], truncate: bool = True, limit: int = 0
    ) -> tuple[np.ndarray, int]:
        """Raw pooled vectors for ``texts`` in order, and the total token count (specials included)."""
        return await self.submit(texts, truncate, limit)  # type: ignore[no-any-return]

    # -- batcher side -------------------------------------------------------------------------

    def _dead_message(self) -> str:
        if self.state == "failed":
            return f"model {self.name!r} failed: {self.error}"
        return f"model {self.name!r} was unloaded"

    def _take_window(self) -> list[_Item]:
        q = self._queue
        window: list[_Item] = []
        chars = 0
        while q and len(window) < self.window_items and chars < self.window_chars:
            item = q.popleft()
            if item[0].future.done():  # cancelled by its client, or already failed
                continue
            window.append(item)
            text = item[0].texts[item[1]]
            chars += len(text) if isinstance(text, str) else sum(len(t) for t in text)
        return window

    async def _gather(self, want: int, seconds: float) -> None:
        """Wait until ``want`` inputs are queued or ``seconds`` pass (see *patience*)."""
        if len(self._queue) >= want or seconds <= 0:
            return
        self._want = want
        self._wake.clear()
        timer = self._loop.call_later(seconds, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            timer.cancel()
            self._want = 0

    async def _run(self) -> None:
        loop = self._loop
        try:
            while True:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    if self.state != "ready":
                        return
                    continue
                window = self._take_window()
                if not window:
                    continue
                self._window = window
                self._busy = True
                started = time.perf_counter()
                try:
                    await loop.run_in_executor(self._executor, self._process, window)
                finally:
                    self._busy = False
                self._finish(window)
                self._window = []
                if len(window) > 1:  # its clients are about to come back: let them
                    seconds = min(self.max_patience, self.patience * (time.perf_counter() - started))
                    await self._gather(min(len(window), self.max_batch), seconds)
                    if self.state != "ready":
                        return
        except asyncio.CancelledError:
            self._fail_all(EngineError(self._dead_message()))
            raise
        except BaseException as exc:  # noqa: BLE001 - the engine crashed: nobody is left waiting
            self.state = "failed"
            self.error = exc
            self._fail_all(EngineError(f"model {self.name!r} failed: {exc}"))
            if self.on_crash is not None:
                self.on_crash(self, exc)

    def _finish(self, window: list[_Item]) -> None:
        seen: set[int] = set()
        for req, _ in window:
            if id(req) in seen:
                continue
            seen.add(id(req))
            fut = req.future
            if fut.done():
                if fut.cancelled():
                    req.settle()
                continue
            if req.error is not None:
                req.settle()
                fut.set_exception(req.error)
            elif req.remaining == 0:
                req.settle()
                fut.set_result(req.result())

    def _fail_all(self, exc: EmbedServeError) -> None:
        for req, _ in (*self._window, *self._queue):
            req.settle()
            if not req.future.done():
                req.future.set_exception(exc)
        self._window = []
        self._queue.clear()

    def _process(self, window: list[_Item]) -> None:
        """Worker thread: tokenise per request, sort by length, run batches under the budget."""
        entries: list[tuple[int, _Request, int, list[int]]] = []
        # group consecutive items of one request (a window holds them in queue order)
        start = 0
        while start < len(window):
            req = window[start][0]
            end = start + 1
            while end < len(window) and window[end][0] is req:
                end += 1
            if req.error is None and not req.future.cancelled():  # a client that hung up: skip
                idxs = [i for _, i in window[start:end]]
                try:
                    ids = self._tokenize(req, [req.texts[i] for i in idxs])
                    if req.limit:
                        ids = _narrow(ids, idxs, req.limit, req.truncate)
                except InvalidInput as exc:  # e.g. InputTooLong: fails this request only
                    req.error = exc
                else:
                    for i, t in zip(idxs, ids):
                        entries.append((len(t), req, i, t))
                        req.tokens += len(t)
                        if req.counts is not None:
                            req.counts[i] = len(t)
            start = end
        if not entries:
            return
        if len(entries) > 1:
            entries.sort(key=lambda e: (e[1].mode, e[0]))
        budget = self.batch_tokens
        batch: list[tuple[int, _Request, int, list[int]]] = []
        for entry in entries:
            # sorted ascending, so the newcomer is the longest: cost = its length x new count
            if batch and (entry[0] * (len(batch) + 1) > budget or len(batch) >= self.max_batch
                          or entry[1].mode != batch[0][1].mode):
                self._run_batch(batch)
                batch = []
            batch.append(entry)
        self._run_batch(batch)

    def _tokenize(self, req: _Request, texts: list[Any]) -> list[list[int]]:
        engine: Any = self.engine
        if req.mode == "pairs":
            return engine.tokenize_pairs(texts, truncate=req.truncate)  # type: ignore[no-any-return]
        if req.mode == "query_tokens" and hasattr(engine, "tokenize_query"):
            return engine.tokenize_query(texts, truncate=req.truncate)  # type: ignore[no-any-return]
        return engine.tokenize(texts, truncate=req.truncate)  # type: ignore[no-any-return]

    def _infer(self, mode: str, batch: list[list[int]]) -> Any:
        engine: Any = self.engine
        out: Any
        if mode == "pairs":
            out = np.asarray(engine.score_ids(batch), dtype=np.float32).reshape(-1)
        elif mode == "dense_tokens":
            pooled, tokens = engine.embed_both(batch)
            out = [(np.asarray(p, dtype=np.float32), np.asarray(t, dtype=np.float32))
                   for p, t in zip(pooled, tokens)]
        elif mode != "embed":
            out = [np.asarray(v, dtype=np.float32) for v in engine.embed_tokens(batch)]
        else:
            out = np.asarray(engine.embed_ids(batch), dtype=np.float32)
            if out.ndim != 2:
                raise EngineError(f"engine returned shape {out.shape} for a batch of {len(batch)} inputs")
        if len(out) != len(batch):
            raise EngineError(f"engine returned {len(out)} results for a batch of {len(batch)} inputs")
        return out

    def _run_batch(self, batch: list[tuple[int, _Request, int, list[int]]]) -> None:
        live = [e for e in batch if e[1].error is None and not e[1].future.cancelled()]
        if not live:
            return
        t0 = time.perf_counter()
        mode = live[0][1].mode
        vectors = self._infer(mode, [e[3] for e in live])
        elapsed = time.perf_counter() - t0
        if self.metrics is not None:
            self.metrics.observe_batch(self.name, [e[0] for e in live])
            self.metrics.engine_seconds.observe(elapsed, (self.name,))
        per_token = elapsed / max(1, sum(e[0] for e in live))
        done: list[_Request] = []
        for row, (length, req, i, _) in enumerate(live):
            if req.n == 1:
                req.out = vectors[row : row + 1]
            elif req.out is None:
                req.out = ([None] * req.n if isinstance(vectors, list)
                           else np.empty((req.n, *vectors.shape[1:]), dtype=np.float32))
            if req.n > 1:
                req.out[i] = vectors[row]
            req.seconds += per_token * length
            req.remaining -= 1
            if req.remaining == 0:
                done.append(req)
        if done:  # answer these now, while the engine runs the window's next batch
            self._loop.call_soon_threadsafe(self._resolve, done)

    @staticmethod
    def _resolve(done: list[_Request]) -> None:
        for req in done:
            req.settle()
            if not req.future.done():
                req.future.set_result(req.result())

    async def close(self) -> None:
        """Stop the task; anything still queued gets an error. Idempotent."""
        if self.state == "ready":
            self.state = "closed"
        self._wake.set()
        task = self._task
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_all(EngineError(self._dead_message()))
