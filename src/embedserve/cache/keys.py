"""Cache keys and values: what decides a vector, hashed; the raw vector and its token count, packed.

A key is ``embedserve:1:<namespace>:<sha256 of the text>``. The namespace hashes everything besides
the text that changes the raw pooled vector: the weights' digest, the engine variant (quantization
and graph format), pooling, the window the text is cut to (the model's, or a request's smaller
``num_ctx``), ``truncate`` (with ``truncate=False`` an over-long text is an error, never a vector)
and the prompt prepended to the text, if any. Two tags of the same weights and variant share
entries; the fp32 and int8 variants of one model never do.

A value is the token count (little-endian uint32: ``prompt_eval_count`` still counts cached
inputs) followed by the raw float32 vector (little-endian), before normalisation and ``dimensions``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from embedserve.engine.base import EngineInfo

KEY_VERSION = "1"
_F32 = np.dtype("<f4")


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
    return f"embedserve:{KEY_VERSION}:{digest}:"


def text_keys(ns: str, texts: Sequence[str]) -> list[str]:
    sha = hashlib.sha256
    return [ns + sha(t.encode("utf-8", "surrogatepass")).hexdigest() for t in texts]


def pack(vector: np.ndarray, tokens: int) -> bytes:
    return int(tokens).to_bytes(4, "little") + np.ascontiguousarray(vector, _F32).tobytes()


def unpack(value: bytes, dim: int) -> tuple[np.ndarray, int] | None:
    """(vector, tokens), or None for a value of the wrong size (a foreign or damaged entry)."""
    if len(value) != 4 + 4 * dim:
        return None
    return np.frombuffer(value, _F32, dim, 4), int.from_bytes(value[:4], "little")
