"""The embedding cache: memory LRU first, Redis second, and one request's walk through both.

:class:`Lookup` is one call's texts against the cache: the memory level answers at once, Redis (if
configured and up) answers the rest in one batch, and only the remaining texts, each distinct text
once, are left to compute. :meth:`Lookup.complete` takes those vectors and token counts, writes
them to both levels and returns the whole call's raw vectors in input order. A hit is the stored
float32 bytes of an earlier computation with the same key: bitwise what the engine returned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from embedserve.cache.keys import (
    cache_keys,
    namespace,
    pack,
    pack_rows,
    redis_key,
    redis_write,
    redis_write_raw,
    unpack,
)
from embedserve.cache.memory import MemoryLRU
from embedserve.cache.remote import RedisTier
from embedserve.engine.base import EngineInfo

SPECULATE_MAX = 8  # misses, at most, for a lookup to compute while (or without) asking Redis
STAGED_MAX = 32  # one-text misses a keyspace holds unpacked before they enter the LRU together


class EmbeddingCache:
    def __init__(self, max_bytes: int, remote: RedisTier | None = None) -> None:
        self.memory = MemoryLRU(max_bytes) if max_bytes > 0 else None
        self.remote = remote
        self.hits = {"memory": 0, "redis": 0}
        self.misses = 0
        # by namespace: every caller sees the same staged entries (Keyspace.embed_one)
        self._spaces: dict[str, Keyspace] = {}

    @property
    def enabled(self) -> bool:
        return self.memory is not None or self.remote is not None

    def keyspace(
        self, info: EngineInfo, *, window: int = 0, truncate: bool = True, prompt: str = ""
    ) -> Keyspace | None:
        """This cache as seen by one engine and set of options; None when the engine cannot be
        cached. A caller that looks up often with the same options keeps it (``Embedder`` does)."""
        ns = namespace(info, window=window, truncate=truncate, prompt=prompt)
        if ns is None or not self.enabled:
            return None
        space = self._spaces.get(ns)
        if space is None:  # (two threads may both make one: the last stored is kept, both work)
            space = self._spaces[ns] = Keyspace(self, ns, info.dim)
        return space

    def lookup(
        self,
        info: EngineInfo,
        texts: Sequence[str],
        *,
        window: int = 0,
        truncate: bool = True,
        prompt: str = "",
    ) -> Lookup | None:
        """Start a lookup (memory level done); None when this engine cannot be cached."""
        space = self.keyspace(info, window=window, truncate=truncate, prompt=prompt)
        return None if space is None else Lookup(space, texts)

    def close(self) -> None:
        if self.remote is not None:
            self.remote.close()

    async def aclose(self) -> None:
        """:meth:`close` from the event loop the server looked up on (closes its asyncio client)."""
        if self.remote is not None:
            await self.remote.aclose()


Compute = Callable[[list[str]], tuple[np.ndarray, Sequence[int]]]  # texts -> raw vectors, tokens


class Keyspace:
    """The cache's entries for one engine and set of options (one key namespace).

    :meth:`embed_one` is a one-text :class:`Lookup` in a handful of calls: right after an engine
    run every Python call is cold (~5 us even when empty) and a single-text miss pays for each
    (BENCHMARKS.md, the cost of a miss). Its misses are *staged*: kept as computed (vector, token
    count) and seen by later calls at once, and packed into the LRU together, ``STAGED_MAX`` at a
    time or before the next :class:`Lookup`, so a miss does no packing and takes no lock. Staged
    entries (a few dozen at most) are not counted in the LRU's bytes.
    """

    __slots__ = ("_staged", "cache", "dim", "namespace")

    def __init__(self, cache: EmbeddingCache, namespace: str, dim: int) -> None:
        self.cache = cache
        self.namespace = namespace
        self.dim = dim
        self._staged: dict[str, tuple[np.ndarray, int]] = {}  # key -> (raw (1, dim) vector, tokens)

    def lookup(self, texts: Sequence[str]) -> Lookup:
        if self._staged:
            self.settle()
        return Lookup(self, texts)

    def embed_one(self, text: str, compute: Compute) -> np.ndarray | None:
        """One text's raw vector, shape (1, dim), from memory or else ``compute([text])`` (then
        staged); None, having computed nothing, when Redis is to be asked first (use a
        :class:`Lookup`). Redis is written off the call (``put_later``, probing).

        The array returned is the cache's own: read it, do not write to it."""
        cache = self.cache
        key = self.namespace + text
        memory = cache.memory
        if memory is not None:
            value = memory.peek(key)
            hit = None if value is None else unpack(value, self.dim)
            if hit is not None:
                memory.touch(key)
                cache.hits["memory"] += 1
                return hit[0].reshape(1, self.dim)
            held = self._staged.get(key)
            if held is not None:
                cache.hits["memory"] += 1
                return held[0]
        remote = cache.remote
        plan = "none" if remote is None else remote.plan(probes=True)
        if plan == "first":
            return None
        vectors, counts = compute([text])
        cache.misses += 1
        entry = (vectors, counts[0])
        if memory is not None:
            staged = self._staged
            staged[key] = entry
            if len(staged) >= STAGED_MAX:
                self.settle()
        if plan == "skip":
            assert remote is not None
            remote.put_later(((key, entry),), item=redis_write_raw, probe=True)
        return vectors

    def settle(self) -> None:
        """Move the staged entries into the LRU (packed), oldest first."""
        staged = self._staged
        items = []
        while staged:
            try:
                key, (vector, tokens) = staged.popitem()  # (atomic: others may stage meanwhile)
            except KeyError:  # another thread settled the last one
                break
            items.append((key, pack(vector, tokens)))
        if items and self.cache.memory is not None:
            self.cache.memory.put_many(reversed(items))  # (popitem takes the newest first)


class Lookup:
    def __init__(self, space: Keyspace, texts: Sequence[str]) -> None:
        self.cache = cache = space.cache
        self.keys = keys = cache_keys(space.namespace, texts)
        self.texts = texts
        self.dim = space.dim
        n = len(keys)
        self.vectors: list[np.ndarray | None] = [None] * n
        self.tokens = [0] * n
        self._missing = list(range(n))
        if cache.memory is not None:
            self._fill(cache.memory.get_many(keys), "memory")

    def _fill(self, values: Sequence[bytes | None], level: str) -> list[tuple[str, bytes]]:
        """Take hits for the still-missing positions from ``values`` (aligned with them)."""
        still: list[int] = []
        found: list[tuple[str, bytes]] = []
        for i, value in zip(self._missing, values):
            entry = unpack(value, self.dim) if value is not None else None
            if entry is None:
                still.append(i)
                continue
            self.vectors[i], self.tokens[i] = entry
            found.append((self.keys[i], value))  # type: ignore[arg-type]
        self.cache.hits[level] += len(self._missing) - len(still)
        self._missing = still
        return found

    @property
    def wants_remote(self) -> bool:
        remote = self.cache.remote
        return bool(self._missing) and remote is not None and remote.usable()

    def remote_keys(self) -> list[str]:
        """The Redis keys of the texts still missing."""
        keys = self.keys
        return [redis_key(keys[i]) for i in self._missing]

    def take_remote(self, values: Sequence[bytes | None]) -> None:
        """Redis's answer for :meth:`remote_keys`; its hits are promoted to memory."""
        found = self._fill(values, "redis")
        if found and self.cache.memory is not None:
            self.cache.memory.put_many(found)

    def fetch_remote(self) -> None:
        """Blocking: ask Redis for what memory did not have."""
        if self.wants_remote:
            assert self.cache.remote is not None
            self.take_remote(self.cache.remote.get_many(self.remote_keys()))

    def remote_plan(self, *, probes: bool = False) -> str:
        """How this lookup uses Redis: ``"none"`` (nothing left for it, or it is down),
        ``"first"`` (ask, then compute what it lacks), and for a lookup of up to ``SPECULATE_MAX``
        misses whatever :meth:`RedisTier.plan` says (``"during"``: ask while computing;
        ``"skip"``: compute without asking; with ``probes``, never ``"during"``: pass
        ``probe=True`` to :meth:`complete` after a ``"skip"``). Beside the compute of more texts,
        a round trip is under 1 %, so larger lookups always ask first."""
        if not self.wants_remote:
            return "none"
        if len(self._missing) > SPECULATE_MAX:
            return "first"
        return self.cache.remote.plan(probes=probes)  # type: ignore[union-attr]

    @property
    def hit_all(self) -> bool:
        return not self._missing

    def miss_texts(self) -> list[str]:
        """The distinct texts left to compute, in first-seen order."""
        self._slots: dict[str, int] = {}  # key -> index into the computed batch
        self._runs: list[int] = []  # missing position -> index into the computed batch
        self._asked = list(self._missing)  # (Redis may answer some of them afterwards)
        texts: list[str] = []
        for i in self._missing:
            slot = self._slots.get(self.keys[i])
            if slot is None:
                slot = self._slots[self.keys[i]] = len(texts)
                texts.append(self.texts[i])
            self._runs.append(slot)
        return texts

    def miss_index(self, computed_index: int) -> int:
        """The caller's index of the ``computed_index``-th text of :meth:`miss_texts`."""
        return self._asked[self._runs.index(computed_index)]

    def complete(
        self,
        computed: np.ndarray | None = None,
        counts: Sequence[int] = (),
        *,
        background: bool = False,
        probe: bool = False,
    ) -> tuple[np.ndarray, int]:
        """All raw vectors in input order and the total token count; stores what was computed.

        ``computed``/``counts``: the vectors and token counts of :meth:`miss_texts`, in its order.
        ``background``: write Redis without waiting for it (the write rides along with the next
        lookup; :meth:`RedisTier.put_later`) instead of now; ``probe``: this lookup did not ask
        Redis, so its background write asks first (``put_later(probe=True)``).
        """
        cache = self.cache
        missing = self._missing
        if missing:
            assert computed is not None
            cache.misses += len(missing)
            slots = self._slots  # key -> its row of computed
            if len(slots) != len(missing):  # repeats, or Redis answered some of them meanwhile
                slots = {self.keys[i]: slots[self.keys[i]] for i in missing}
            values = pack_rows(computed, slots.values(), counts)
            if cache.memory is not None:
                cache.memory.put_many(zip(slots, values))
            if cache.remote is not None:
                if background:  # Redis keys are made when the write is sent, off this call
                    cache.remote.put_later(list(zip(slots, values)), item=redis_write, probe=probe)
                else:
                    cache.remote.put_many([redis_write(x) for x in zip(slots, values)])
            if len(computed) == len(missing) == len(self.keys):  # all missed, all distinct
                return computed, int(sum(counts))
        out = np.empty((len(self.keys), self.dim), dtype=np.float32)
        for i, vec in enumerate(self.vectors):
            if vec is not None:
                out[i] = vec
        if missing:
            assert computed is not None
            for i in missing:
                slot = self._slots[self.keys[i]]
                out[i] = computed[slot]
                self.tokens[i] = int(counts[slot])
        return out, sum(self.tokens)
