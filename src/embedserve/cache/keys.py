"""Cache keys and values: what decides a vector, and the raw vector with its token count, packed.

A cache key is ``embedserve:1:<namespace>:<the text>``; in Redis it is stored under
``embedserve:1:<namespace>:<sha256 of the text>`` (:func:`redis_key`: short, fixed-size keys on a
shared server). The in-process level keys by the text itself: a dict hashes it anyway, and sha256
on every call cost ~35 us right after an engine run (BENCHMARKS.md, the cost of a miss).

The namespace hashes everything besides the text that changes the raw pooled vector: the weights'
digest, the engine variant (quantization and graph format), pooling, the window the text is cut to
(the model's, or a request's smaller ``num_ctx``), ``truncate`` (with ``truncate=False`` an
over-long text is an error, never a vector) and the prompt prepended to the text, if any. Two tags
of the same weights and variant share entries; the fp32 and int8 variants of one model never do.

A value is the token count (little-endian uint32: ``prompt_eval_count`` still counts cached
inputs) followed by the raw float32 vector (little-endian), before normalisation and ``dimensions``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

from embedserve.engine.base import EngineInfo

KEY_VERSION = "1"
_PREFIX = f"embedserve:{KEY_VERSION}:"
_NS_LEN = len(_PREFIX) + 33  # a namespace: the prefix, 32 hex digits and ":"
F32 = np.dtype("<f4")


def namespace(
    info: EngineInfo, *, window: int = 0, truncate: bool = True, prompt: str = ""
) -> str | None:
    """The part of the key shared by one model and set of options; None when the engine has no
    weights digest (nothing safe to key on: no cache)."""
    if not info.digest:
        return None
    window = window if 0 < window < info.max_tokens else info.max_tokens
    parts = (
        info.digest, getattr(info, "variant", ""), info.pooling, str(info.dim), str(window),
        "t" if truncate else "f", prompt,
    )
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]
    return f"{_PREFIX}{digest}:"


def cache_keys(ns: str, texts: Sequence[str]) -> list[str]:
    """The keys of ``texts`` in namespace ``ns`` (as :func:`namespace` made it)."""
    return [ns + t for t in texts]


def redis_key(key: str) -> str:
    """The Redis key of a cache key: its namespace and the sha256 of its text."""
    text = key[_NS_LEN:]
    return key[:_NS_LEN] + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def redis_write(item: tuple[str, bytes]) -> tuple[str, bytes]:
    """A (key, value) write as Redis stores it: under :func:`redis_key`."""
    return redis_key(item[0]), item[1]


def redis_write_raw(item: tuple[str, tuple[np.ndarray, int]]) -> tuple[str, bytes]:
    """A (key, (vector, tokens)) write as Redis stores it: packed, under :func:`redis_key`."""
    key, (vector, tokens) = item
    return redis_key(key), pack(vector, tokens)


def pack(vector: np.ndarray, tokens: int) -> bytes:
    """A value: ``tokens`` and ``vector`` (float32; of any shape holding the ``dim`` values)."""
    if vector.dtype is not F32:  # (float32 on a little-endian machine is this very dtype)
        vector = vector.astype(F32)
    return int(tokens).to_bytes(4, "little") + vector.tobytes()


def pack_rows(vectors: np.ndarray, rows: Iterable[int], counts: Sequence[int]) -> list[bytes]:
    """:func:`pack` of each of ``rows`` of ``vectors`` with its token count (``counts[row]``)."""
    return [pack(vectors[r], counts[r]) for r in rows]


def unpack(value: bytes, dim: int) -> tuple[np.ndarray, int] | None:
    """(vector, tokens), or None for a value of the wrong size (a foreign or damaged entry)."""
    if len(value) != 4 + 4 * dim:
        return None
    return np.frombuffer(value, F32, dim, 4), int.from_bytes(value[:4], "little")
