"""The first cache level: an in-process LRU bounded in bytes (keys, values and per-entry overhead).

Keys are the texts themselves (:mod:`embedserve.cache.keys`): an ASCII key is counted at a byte a
character, any other at 4 (CPython stores at most that; ``sys.getsizeof`` would be exact but costs
~30 us a call right after an engine run, more than the rest of a write).

Thread-safe (one lock; every operation is a few dict moves): the server's event loop, the library
and collection writers in worker threads may share one instance. :attr:`MemoryLRU.peek` reads
without the lock (a single dict read is atomic): a one-text miss right after an engine run, where
every call is cold, pays for no lock and no Python frame to learn it missed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence

ENTRY_OVERHEAD = 150  # bytes per entry beyond the key's and the value's data: dict slot,
# OrderedDict link, the key's and the value's object headers


def _cost(key: str, value: bytes) -> int:
    return (len(key) if key.isascii() else 4 * len(key)) + len(value) + ENTRY_OVERHEAD


class MemoryLRU:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._data: OrderedDict[str, bytes] = OrderedDict()
        # peek(key): the value or None, not marked recently used (touch() does); the dict's own
        # bound method, so no Python frame and no lock
        self.peek = self._data.get
        self._lock = threading.Lock()
        self.bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._data)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        out: list[bytes | None] = []
        with self._lock:
            data = self._data
            for key in keys:
                value = data.get(key)
                if value is not None:
                    data.move_to_end(key)
                out.append(value)
        return out

    def touch(self, key: str) -> None:
        """Mark ``key`` most recently used (after a hit from :attr:`peek`)."""
        with self._lock:
            if key in self._data:  # (another thread may have evicted it since)
                self._data.move_to_end(key)

    def put(self, key: str, value: bytes) -> None:
        """Store one entry, most recently used (one larger than the whole LRU is not stored)."""
        cost = _cost(key, value)
        if cost > self.max_bytes:
            return
        with self._lock:
            data = self._data
            old = data.pop(key, None)
            if old is not None:
                self.bytes -= _cost(key, old)
            data[key] = value
            self.bytes += cost
            if self.bytes > self.max_bytes:
                self._evict()

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        for key, value in items:
            self.put(key, value)

    def _evict(self) -> None:
        data = self._data
        while self.bytes > self.max_bytes and data:
            key, value = data.popitem(last=False)
            self.bytes -= _cost(key, value)
            self.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.bytes = 0
