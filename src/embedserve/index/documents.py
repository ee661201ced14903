"""Documents as users give them: parsing, ids, content hashes, their own embeddings, empty records.

A document is ``{"id"?, "text", "metadata"?, "embedding"?}`` (or a :class:`Document`, or a bare
string). ``embedding`` (Chroma's ``embeddings=``) is a list of ``dim`` finite numbers, not all zero:
it is stored as given (one chunk spanning the text) and nothing is embedded for that document;
queries still go through the collection's model. A document with no text (missing, empty or only
whitespace) and no embedding is an *empty record*: it is skipped and reported, never an error that
fails its whole batch or file.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedserve.errors import InvalidInput

FIELDS = ("id", "text", "metadata", "embedding")
_F32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    embedding: Sequence[float] | np.ndarray | None = None


def content_hash(text: str, embedding: np.ndarray | None = None) -> str:
    """sha256 of the text (and of the given vector's float32 bytes, when the document brings one)."""
    h = hashlib.sha256(text.encode("utf-8"))
    if embedding is not None:
        h.update(b"\0embedding\0")
        h.update(np.asarray(embedding, dtype=np.float32).tobytes())
    return h.hexdigest()


def is_empty(d: Document) -> bool:
    return d.embedding is None and not d.text.strip()


def check_embedding(value: Any, dim: int, where: str) -> np.ndarray:
    """A user's vector as float32, or :class:`InvalidInput` saying what is wrong with it."""
    arr = np.asarray(value) if isinstance(value, (list, tuple, np.ndarray)) else None
    plain = arr is not None and (isinstance(value, np.ndarray) or not any(isinstance(x, bool) for x in value))
    if plain and arr is not None and arr.ndim == 1 and arr.dtype.kind in "fiu" and len(arr):  # the fast path
        wide = arr.astype(np.float64, copy=False)
        if np.all(np.isfinite(wide)) and np.max(np.abs(wide)) <= _F32_MAX and len(arr) == dim and np.any(wide):
            return arr.astype(np.float32)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidInput(f"{where}: 'embedding' must be a non-empty list of numbers")
    for j, x in enumerate(value):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise InvalidInput(f"{where}: 'embedding'[{j}] is not a number")
        if not math.isfinite(x):
            raise InvalidInput(f"{where}: 'embedding'[{j}] is {x}; values must be finite")
    if len(value) != dim:
        raise InvalidInput(f"{where}: 'embedding' has {len(value)} values; this collection's vectors have {dim}")
    if max(abs(x) for x in value) > _F32_MAX:
        raise InvalidInput(f"{where}: 'embedding' overflows float32")
    raise InvalidInput(f"{where}: 'embedding' is all zeros; it has no direction to compare")


def check_embeddings(docs: Sequence[Document], dim: int) -> dict[str, np.ndarray]:
    """``id -> float32 vector`` for the documents that bring one, checked as a batch (numpy over
    the stacked rows); any row that fails is checked alone, to name its fault."""
    own = [d for d in docs if d.embedding is not None]
    if not own:
        return {}
    try:
        if all(isinstance(d.embedding, np.ndarray) for d in own):
            m = np.stack([np.asarray(d.embedding) for d in own])
        else:
            m = np.array([d.embedding for d in own])
    except (TypeError, ValueError):
        m = None
    if m is not None and m.ndim == 2 and m.shape[1] == dim and m.dtype.kind in "fiu":
        wide = m if m.dtype == np.float32 else m.astype(np.float64)
        ok = np.isfinite(wide).all(axis=1) & (np.abs(wide).max(axis=1) <= _F32_MAX) & wide.any(axis=1)
        if ok.all() and not any(
            isinstance(x, bool) for d in own if not isinstance(d.embedding, np.ndarray) for x in d.embedding  # type: ignore[union-attr]
        ):
            f32 = m.astype(np.float32, copy=False)
            return {d.id: f32[i] for i, d in enumerate(own)}
    return {d.id: check_embedding(d.embedding, dim, f"document {d.id!r}") for d in own}


def as_document(item: Any, i: int) -> Document:
    """Parse one input item (position ``i``, for messages); empty text is allowed here."""
    emb: Any = None
    if isinstance(item, Document):
        doc_id, text, meta, emb = item.id, item.text, item.metadata, item.embedding
    elif isinstance(item, str):
        doc_id, text, meta = None, item, None
    elif isinstance(item, Mapping):
        unknown = set(item) - set(FIELDS)
        if unknown:
            raise InvalidInput(f"document {i}: unknown field(s) {sorted(unknown)}; use {', '.join(FIELDS)}")
        doc_id, text, meta, emb = item.get("id"), item.get("text"), item.get("metadata"), item.get("embedding")
    else:
        raise InvalidInput(f"document {i}: expected an object with 'text', got {type(item).__name__}")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise InvalidInput(f"document {i}: 'text' must be a string")
    if emb is not None and not isinstance(emb, (list, tuple, np.ndarray)):
        raise InvalidInput(f"document {i}: 'embedding' must be a list of numbers")
    if doc_id is not None and doc_id != "" and (not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool)):
        raise InvalidInput(f"document {i}: 'id' must be a string")
    if doc_id is None or doc_id == "":
        if not text.strip() and emb is None:
            doc_id = f"#{i}"  # an empty record without an id: named by its position in the input
        else:
            doc_id = content_hash(text, None if emb is None else _hashable(emb))[:16]
    if meta is None:
        meta = {}
    if not isinstance(meta, Mapping):
        raise InvalidInput(f"document {i}: 'metadata' must be a JSON object")
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"document {i}: metadata is not JSON-serialisable ({exc})") from None
    return Document(str(doc_id), text, dict(meta), emb)


def _hashable(emb: Any) -> np.ndarray | None:
    try:
        return np.asarray(emb, dtype=np.float32)
    except (TypeError, ValueError):
        return None  # not numbers: check_embedding reports it
