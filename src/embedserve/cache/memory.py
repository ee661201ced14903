"""The first cache level: an in-process LRU bounded in bytes (keys, values and per-entry overhead).

Keys are the texts themselves (:mod:`embedserve.cache.keys`): an ASCII key is counted at a byte a
character, any other at 4 (CPython stores at most that; ``sys.getsizeof`` would be exact but costs
~30 us a call right after an engine run, more than the rest of a write).

Thread-safe (one lock; every operation is a few dict moves): the server's event loop, the library
and collection writers in worker threads may share one instance.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence

ENTRY_OVERHEAD = 150  # bytes per entry beyond the key's and the value's data: dict slot,
# OrderedDict link, the key's and the value's object headers


class MemoryLRU:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._data)

    @staticmethod
    def _cost(key: str, value: bytes) -> int:
        return (len(key) if key.isascii() else 4 * len(key)) + len(value) + ENTRY_OVERHEAD

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

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        limit = self.max_bytes
        with self._lock:
            data = self._data
            for key, value in items:
                cost = self._cost(key, value)
                if cost > limit:
                    continue
                old = data.pop(key, None)
                if old is not None:
                    self.bytes -= self._cost(key, old)
                data[key] = value
                self.bytes += cost
            if self.bytes > limit:
                self._evict()

    def _evict(self) -> None:
        data = self._data
        while self.bytes > self.max_bytes and data:
            key, value = data.popitem(last=False)
            self.bytes -= self._cost(key, value)
            self.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.bytes = 0
