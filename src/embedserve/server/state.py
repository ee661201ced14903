"""What the routes share, built in the app's lifespan: settings, the model manager, the store."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from starlette.requests import Request

from embedserve.cache import EmbeddingCache
from embedserve.cache.serve import embed_cached
from embedserve.config import Settings
from embedserve.errors import InvalidModelName, ModelNotFound, TooManyInputs
from embedserve.prompts import apply, model_prefix
from embedserve.server.errors import HTTPError
from embedserve.service.admission import Admission
from embedserve.service.manager import ModelManager, ResidentModel
from embedserve.service.metrics import Metrics
from embedserve.store.names import canonical
from embedserve.vectors import l2_normalize, truncate_dimensions

# A request's usage meter, if a middleware put one in its scope (auth/): anything with
# ``record(inputs, tokens, compute_seconds)``, told what the engine spent on the request.
USAGE_KEY = "embedserve.usage"


@dataclass
class ServerState:
    settings: Settings
    manager: ModelManager
    store: Any  # embedserve.store.local.ModelStore, or a stand-in with the same methods
    metrics: Metrics
    executor: Executor  # model work: loads, tokenisation, inference
    io_executor: Executor  # store work: pulls, deletes, listings
    cache: EmbeddingCache | None = None  # between the routes and the batchers
    admission: Admission | None = None  # refuses embed requests before parsing when queues are full

    async def in_io(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.io_executor, fn, *args)


@dataclass
class EmbedResult:
    vectors: np.ndarray  # (n, d) float32
    tokens: int
    load_ns: int


def check_name(name: str, *, not_found: str) -> str:
    """Canonical name; blank -> 404 ``not_found`` text; invalid -> 400 ``invalid model name``."""
    if not name.strip():
        raise HTTPError(404, not_found)
    return canonical(name)  # raises InvalidModelName


def check_count(state: ServerState, n: int) -> None:
    if n > state.settings.max_inputs:
        raise TooManyInputs(n, state.settings.max_inputs)


Inputs = list[str] | list[tuple[str, str]]  # texts; (query, document) pairs in mode "pairs"


async def embed_texts(
    state: ServerState,
    model: str,
    texts: Inputs,
    *,
    truncate: bool = True,
    keep_alive: float | None = None,
    num_ctx: int = 0,
    not_found: str,
    client: Request | None = None,
    mode: str = "embed",
    prompt_name: str | None = None,
) -> EmbedResult:
    """Hold ``model`` (loading it on first use) and embed ``texts``: raw pooled float32 vectors.

    ``mode`` (the batcher's): ``"tokens"`` / ``"query_tokens"`` give a list of raw token-vector
    arrays, ``"pairs"`` (``texts`` are (query, document) tuples) raw logits; a model of the wrong
    kind is a 400 (``"NAME" does not support ...``, Ollama's wording).

    An empty ``texts`` only loads the model (Ollama's preload idiom) and keeps it per keep_alive.
    With ``client``, a client that hangs up while its texts wait has them dropped from the queue
    (the batcher skips cancelled requests), as TEI does, instead of embedding them for nobody.
    ``prompt_name``: one of the model's prompts, prepended to each text (none: the model's default
    prompt, if any); an unknown name is a 400 listing the model's prompts.
    """
    usage = client.scope.get(USAGE_KEY) if client is not None else None
    if usage is None:
        return await _embed(
            state, model, texts, truncate, keep_alive, num_ctx, not_found, client, None, mode,
            prompt_name=prompt_name,
        )
    spent: list[float] = []  # the batcher reports this request's share of engine time
    result: EmbedResult | None = None
    try:
        result = await _embed(
            state, model, texts, truncate, keep_alive, num_ctx, not_found, client, spent.append,
            mode,
            prompt_name=prompt_name,
        )
    finally:
        if result is None:  # failed: only the compute already spent counts
            usage.record(0, 0, sum(spent))
        else:
            usage.record(len(texts), result.tokens, sum(spent))
    return result


async def _embed(
    state: ServerState,
    model: str,
    texts: Inputs,
    truncate: bool,
    keep_alive: float | None,
    num_ctx: int,
    not_found: str,
    client: Request | None,
    on_compute: Any,
    mode: str = "embed",
    *,
    prompt_name: str | None = None,
) -> EmbedResult:
    t0 = time.perf_counter_ns()
    try:
        resident: ResidentModel = await state.manager.acquire(model, keep_alive)
    except ModelNotFound:
        raise HTTPError(404, not_found) from None
    except InvalidModelName:
        raise
    try:
        load_ns = time.perf_counter_ns() - t0
        if resident.engine is not None:
            check_mode(model, resident.engine, mode)
        if not texts:
            return EmbedResult(np.zeros((0, 0), np.float32), 0, load_ns)
        assert resident.batcher is not None and resident.engine is not None
        limit = 0
        if 0 < num_ctx < resident.engine.info.max_tokens:
            if num_ctx < 3:  # no room for one token between the specials
                raise HTTPError(400, "input after truncation exceeds maximum context length")
            limit = num_ctx
        wait = (lambda pending: _unless_gone(client, pending)) if client is not None else None
        if mode != "embed":  # token vectors and pair scores: not the embedding cache's values
            pending = resident.batcher.submit(texts, truncate, limit, on_compute=on_compute, mode=mode)
            if wait is not None:
                await wait(pending)
            vectors, tokens = await pending
            return EmbedResult(vectors, tokens, load_ns)
        info = resident.engine.info  # the model's prompts are for sentence embeddings only
        sentences = apply(model_prefix(info, prompt_name=prompt_name), cast(list[str], texts))
        vectors, tokens = await embed_cached(
            state.cache, resident.batcher, info, sentences,
            truncate=truncate, limit=limit, wait=wait, on_compute=on_compute,
        )
        return EmbedResult(vectors, tokens, load_ns)
    finally:
        state.manager.release(resident)


_MODE_NAMES = {"embed": "embeddings", "tokens": "token embeddings",
               "query_tokens": "token embeddings", "pairs": "rerank"}


def check_mode(model: str, engine: Any, mode: str) -> None:
    """400 unless ``engine`` can do ``mode``: embedders and ColBERT embed and give token
    vectors, cross-encoders only score pairs."""
    kind = getattr(engine.info, "kind", "embedding")
    pairs = callable(getattr(engine, "score_ids", None))
    ok = {"pairs": pairs, "embed": kind != "reranker",
          "tokens": callable(getattr(engine, "embed_tokens", None)) and kind != "reranker"}
    if not ok.get("tokens" if mode == "query_tokens" else mode, False):
        raise HTTPError(400, f'"{model}" does not support {_MODE_NAMES.get(mode, mode)}')


async def _wait_disconnect(client: Request) -> None:
    while (await client.receive())["type"] != "http.disconnect":
        pass


async def _unless_gone(client: Request, pending: asyncio.Future[Any]) -> None:
    """Wait for ``pending``; if the client disconnects first, cancel it and answer 499."""
    watcher = asyncio.ensure_future(_wait_disconnect(client))
    try:
        await asyncio.wait((pending, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not pending.done():
        pending.cancel()
        raise HTTPError(499, "request canceled")


def finish_vectors(vectors: np.ndarray, dimensions: int) -> np.ndarray:
    """L2-normalise, then Matryoshka-truncate when ``0 < dimensions < d`` (ignored otherwise)."""
    out = l2_normalize(vectors)
    if 0 < dimensions < out.shape[1]:
        out = truncate_dimensions(out, dimensions)
    if not np.isfinite(out).all():
        raise HTTPError(400, "embedding contains NaN or Inf values")
    return out
