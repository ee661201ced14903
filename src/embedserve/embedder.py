"""The library entry point: ``Embedder("all-minilm").encode(texts)``.

Batching here sorts the texts by token length and cuts batches under a padded-token budget
(longest x count), so one long text never makes many short ones pay for its padding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, overload

import numpy as np

from embedserve.cache import EmbeddingCache, Keyspace, Lookup, shared_cache
from embedserve.config import Settings, load
from embedserve.engine.base import Engine, EngineInfo
from embedserve.errors import InputTooLong, InvalidInput
from embedserve.prompts import apply, model_prefix
from embedserve.vectors import l2_normalize, truncate_dimensions

# Small batches win on CPU: measured on 2 cores, 1024 padded tokens x at most 64 texts ran short
# texts 1.5x and long texts 1.7x faster than 8192 x 256 (activations stay in cache); BENCHMARKS.md
DEFAULT_BATCH_TOKENS = 1024
DEFAULT_MAX_BATCH = 64
_CHUNK = 4096  # texts tokenised at a time: bounds memory for huge inputs


def plan_batches(lengths: Sequence[int], budget: int, max_count: int) -> list[list[int]]:
    """Indices grouped into batches: longest first, each within ``longest x count <= budget``."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        n = lengths[i]
        w = max(width, n)
        if current and (w * (len(current) + 1) > budget or len(current) >= max_count):
            batches.append(current)
            current, w = [], n
        current.append(i)
        width = w
    if current:
        batches.append(current)
    return batches


class Embedder:
    """Sentence embeddings from an installed model (pulled visibly on first use unless offline)."""

    _cache: EmbeddingCache | None = None
    # the cache as this engine sees it, per ``truncate`` (the engine, so the key namespace, is fixed;
    # the prompt is part of the texts looked up)
    _keyspaces: dict[bool, Keyspace | None]

    def __init__(
        self,
        model: str = "all-minilm",
        *,
        settings: Settings | None = None,
        threads: int | None = None,
        pull_progress: Callable[[Any], None] | None = None,
        cache: EmbeddingCache | None | bool = True,
    ) -> None:
        """``cache``: True (default) shares the process's embedding cache (``EMBEDSERVE_CACHE_MB``,
        ``EMBEDSERVE_REDIS_URL``); False or None computes every vector; or pass your own."""
        from embedserve.service.loader import load_engine

        settings = settings or load()
        self._cache = shared_cache(settings) if cache is True else (cache or None)
        self._keyspaces = {}
        if pull_progress is not None:
            self._engine: Engine = load_engine(
                model, settings, threads=threads, pull_progress=pull_progress
            )
            return
        import sys

        from embedserve.store.progress import ConsoleProgress

        with ConsoleProgress(sys.stderr) as progress:  # a missing model is pulled visibly
            self._engine = load_engine(model, settings, threads=threads, pull_progress=progress)

    @classmethod
    def from_engine(cls, engine: Engine, *, cache: EmbeddingCache | None = None) -> Embedder:
        """An Embedder over ``engine``; uncached unless a ``cache`` is given."""
        self = cls.__new__(cls)
        self._engine = engine
        self._cache = cache
        self._keyspaces = {}
        return self

    @property
    def cache(self) -> EmbeddingCache | None:
        return self._cache

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def info(self) -> EngineInfo:
        return self._engine.info

    @property
    def dim(self) -> int:
        return self._engine.info.dim

    def _compute(
        self,
        items: list[str],
        truncate: bool,
        budget: int,
        max_count: int,
        progress: Callable[[int], None] | None,
        tokens: list[np.ndarray] | None = None,
    ) -> tuple[np.ndarray, list[int]]:
        """Raw vectors for ``items`` straight from the engine, and each one's token count.
        ``tokens``: also each text's raw token vectors, from the same runs (``embed_both``), put
        in this list (as long as ``items``)."""
        engine = self._engine
        out = np.empty((len(items), engine.info.dim), dtype=np.float32)
        counts: list[int] = []
        for start in range(0, len(items), _CHUNK):
            chunk = items[start : start + _CHUNK]
            try:
                ids = engine.tokenize(chunk, truncate=truncate)
            except InputTooLong as err:
                if start:  # report the index in the caller's list
                    raise InputTooLong(start + err.index, err.tokens, err.limit) from None
                raise
            counts.extend(len(x) for x in ids)
            if len(ids) == 1 and tokens is None:
                out[start] = engine.embed_ids(ids)[0]
                if progress is not None:
                    progress(1)
                continue
            for batch in plan_batches([len(x) for x in ids], budget, max_count):
                if tokens is None:
                    vecs = engine.embed_ids([ids[i] for i in batch])
                else:
                    vecs, toks = engine.embed_both([ids[i] for i in batch])  # type: ignore[attr-defined]
                    for i, t in zip(batch, toks):
                        tokens[start + i] = t
                out[[start + i for i in batch]] = vecs
                if progress is not None:
                    progress(len(batch))
        return out, counts

    @property
    def prompts(self) -> dict[str, str]:
        """The model's prompts (name -> prefix), from its config_sentence_transformers.json."""
        return dict(self._engine.info.prompts)

    def _prefix(self, prompt_name: str | None, prompt: str | None) -> str:
        return model_prefix(self._engine.info, prompt_name=prompt_name, prompt=prompt)

    def count_tokens(self, texts: Sequence[str], *, truncate: bool = True,
                     prompt_name: str | None = None, prompt: str | None = None) -> list[int]:
        """Tokens per text as the model sees it: the prompt (if any) included."""
        items = apply(self._prefix(prompt_name, prompt), list(texts))
        return [len(ids) for ids in self._engine.tokenize(items, truncate=truncate)]

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return self._engine.token_spans(text)

    @overload
    def encode(self, texts: str, **kw: Any) -> np.ndarray: ...
    @overload
    def encode(self, texts: Sequence[str], **kw: Any) -> np.ndarray: ...

    def encode(
        self,
        texts: str | Sequence[str],
        *,
        batch_size: int | None = None,
        normalize: bool = True,
        truncate: bool = True,
        dimensions: int | None = None,
        batch_tokens: int | None = None,
        progress: Callable[[int], None] | None = None,
        output: str = "sentence",
        role: str = "document",
        prompt_name: str | None = None,
        prompt: str | None = None,
    ) -> Any:
        """Float32 vectors, shape (n, d), or (d,) for a single string.

        ``normalize``: unit length (cosine = dot); ``False`` gives the raw pooled vectors.
        ``truncate=False`` raises ``InputTooLong`` (with the text's index and token count) instead
        of cutting at the model's window. ``dimensions`` keeps the first d values and re-normalises.
        ``batch_size`` caps texts per batch; batches are also cut at ``batch_tokens`` padded tokens.

        ``output="token"``: one float32 ``(tokens, d)`` array per text (a list; one array for a
        single string), each token vector unit length unless ``normalize=False``, for
        :func:`embedserve.maxsim`. Special tokens are *dropped* for a sentence-transformers model
        (row k is the text's k-th token, as ``token_spans`` lists them); a ColBERT checkpoint
        returns the vectors its recipe scores with: ``role="query"`` adds the [Q] marker and
        [MASK] expansion to ``query_maxlen`` rows, ``role="document"`` the [D] marker, minus
        punctuation.
        ``prompt_name`` prepends one of the model's prompts (``"query"``, ``"search_document"``...),
        ``prompt`` a prefix of your own; neither: the model's default prompt, if it has one.
        """
        if output == "token":
            return self._encode_tokens(texts, batch_size=batch_size, normalize=normalize,
                                       truncate=truncate, batch_tokens=batch_tokens,
                                       progress=progress, role=role)
        if output != "sentence":
            raise InvalidInput(f"output must be 'sentence' or 'token', got {output!r}")
        single = isinstance(texts, str)
        items: list[str] = [texts] if isinstance(texts, str) else [str(t) for t in texts]
        items = apply(self._prefix(prompt_name, prompt), items)  # cached by what the model sees
        if batch_size is not None and batch_size < 1:
            raise InvalidInput(f"batch_size must be at least 1, got {batch_size}")
        if dimensions is not None and dimensions < 1:
            raise InvalidInput(f"dimensions must be at least 1, got {dimensions}")
        budget = batch_tokens or DEFAULT_BATCH_TOKENS
        max_count = batch_size or DEFAULT_MAX_BATCH
        space = self._space(truncate) if items else None
        out = None
        if space is not None and len(items) == 1 and progress is None:  # in fewer (cold) calls
            out = space.embed_one(
                items[0], lambda todo: self._compute(todo, truncate, budget, max_count, None))
            if out is not None and not normalize and dimensions is None:
                out = out.copy()  # (the cache's own array)
        if out is None and space is not None:
            out = self._encode_lookup(space.lookup(items), truncate, budget, max_count, progress)
        elif out is None:
            out, _ = self._compute(items, truncate, budget, max_count, progress)
        if normalize or dimensions is not None:
            out = l2_normalize(out)
        if dimensions is not None:
            out = truncate_dimensions(out, dimensions)
        return out[0] if single else out

    def _space(self, truncate: bool) -> Keyspace | None:
        """The cache as this engine sees it with ``truncate``; None without a cache."""
        if self._cache is None:
            return None
        spaces = self._keyspaces
        if truncate not in spaces:
            spaces[truncate] = self._cache.keyspace(self._engine.info, truncate=truncate)
        return spaces[truncate]

    def encode_with_tokens(
        self,
        texts: Sequence[str],
        *,
        truncate: bool = True,
        prompt_name: str | None = None,
        batch_size: int | None = None,
        batch_tokens: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """``encode(texts, prompt_name=...)`` and ``encode(texts, output="token")``, each unit
        length, from one run of the model per batch: what a multivector collection stores of its
        chunks, for half the compute of the two calls. (With a prompt the two see different
        inputs, since token vectors are of the text as given: then it makes the two calls.) The
        sentence vectors are written to the cache, not looked up: the run that gives the token
        vectors gives them anyway."""
        items = [str(t) for t in texts]
        engine = self._engine
        if self._prefix(prompt_name, None) or not callable(getattr(engine, "embed_both", None)):
            dense = self.encode(items, truncate=truncate, prompt_name=prompt_name,
                                batch_size=batch_size, batch_tokens=batch_tokens, progress=progress)
            return dense, self._encode_tokens(items, batch_size=batch_size, normalize=True,
                                              truncate=truncate, batch_tokens=batch_tokens,
                                              progress=None, role="document")
        if batch_size is not None and batch_size < 1:
            raise InvalidInput(f"batch_size must be at least 1, got {batch_size}")
        tokens: list[np.ndarray] = [np.empty((0, engine.info.dim), np.float32)] * len(items)
        raw, counts = self._compute(items, truncate, batch_tokens or DEFAULT_BATCH_TOKENS,
                                    batch_size or DEFAULT_MAX_BATCH, progress, tokens)
        space = self._space(truncate) if items else None
        if space is not None:  # as encode() would have stored them
            lookup = space.lookup(items)
            if not lookup.hit_all:
                first: dict[str, int] = {}
                for i, text in enumerate(items):
                    first.setdefault(text, i)
                rows = [first[text] for text in lookup.miss_texts()]
                lookup.complete(raw[rows], [counts[r] for r in rows], background=True)
        return l2_normalize(raw), [l2_normalize(t) if len(t) else t for t in tokens]

    def _encode_lookup(
        self,
        lookup: Lookup,
        truncate: bool,
        budget: int,
        max_count: int,
        progress: Callable[[int], None] | None,
    ) -> np.ndarray:
        """Raw vectors for a lookup's texts: the cache's hits, the rest computed (and stored)."""
        # while Redis rarely has what is asked, small lookups do not ask it: their writes
        # carry the asking, off this call (RedisTier.plan)
        plan = lookup.remote_plan(probes=True)
        if plan == "first":
            lookup.fetch_remote()
        todo = [] if lookup.hit_all else lookup.miss_texts()
        if progress is not None and len(todo) < len(lookup.texts):
            progress(len(lookup.texts) - len(todo))
        try:
            raw, counts = self._compute(todo, truncate, budget, max_count, progress)
        except InputTooLong as err:  # the index in the caller's list, not in the misses
            raise InputTooLong(lookup.miss_index(err.index), err.tokens, err.limit) from None
        # Redis: written off the call
        out, _ = lookup.complete(raw, counts, background=True, probe=plan == "skip")
        return out

    def tokenize(self, texts: Sequence[str], *, truncate: bool = True, role: str = "document") -> list[list[int]]:
        """Token ids as the engine will see them (a ColBERT query: marked and expanded)."""
        if role not in ("query", "document"):
            raise InvalidInput(f"role must be 'query' or 'document', got {role!r}")
        query_tokenize = getattr(self._engine, "tokenize_query", None)
        if role == "query" and query_tokenize is not None:
            return query_tokenize(list(texts), truncate=truncate)  # type: ignore[no-any-return]
        return self._engine.tokenize(list(texts), truncate=truncate)

    def _encode_tokens(
        self, texts: str | Sequence[str], *, batch_size: int | None, normalize: bool, truncate: bool,
        batch_tokens: int | None, progress: Callable[[int], None] | None, role: str,
    ) -> Any:
        engine = self._engine
        if not callable(getattr(engine, "embed_tokens", None)):
            raise InvalidInput(f"model {engine.info.name!r} does not give token vectors")
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        if batch_size is not None and batch_size < 1:
            raise InvalidInput(f"batch_size must be at least 1, got {batch_size}")
        out: list[np.ndarray] = [np.empty(0)] * len(items)
        for start in range(0, len(items), _CHUNK):
            chunk = items[start : start + _CHUNK]
            try:
                ids = self.tokenize(chunk, truncate=truncate, role=role)
            except InputTooLong as err:
                raise InputTooLong(start + err.index, err.tokens, err.limit) from None
            plan = plan_batches([len(x) for x in ids], batch_tokens or DEFAULT_BATCH_TOKENS,
                                batch_size or DEFAULT_MAX_BATCH)
            for batch in plan:
                vecs = engine.embed_tokens([ids[i] for i in batch])  # type: ignore[attr-defined]
                for i, v in zip(batch, vecs):
                    v = np.asarray(v, dtype=np.float32)
                    out[start + i] = l2_normalize(v) if normalize and len(v) else v
                if progress is not None:
                    progress(len(batch))
        return out[0] if single else out
