"""``embedserve index add --ray``: the corpus job embeds a collection's chunks, then ``add`` stores
them.

The collection decides the chunks (its own chunker, its model's token spans, on the driver); the
unique chunk texts go through :func:`embedserve.ray.corpus.run` (the Ray Data actor pool of
``embed --ray``), and ``Collection.add`` runs as always (content hashes, upserts, one transaction
per batch) with an encoder that hands back those vectors by text, so the collection code does not
change and a text the job could not embed (an empty chunk) is embedded locally.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from embedserve.config import Settings
from embedserve.index.chunking import chunk_text
from embedserve.prompts import role_prompt
from embedserve.ray import corpus


class Precomputed:
    """An IndexEncoder answering from vectors computed beforehand (by text), with ``prompt_name``
    applied; any other request (token vectors, another prompt) goes to the model."""

    def __init__(self, base: Any, table: dict[str, np.ndarray], prompt_name: str | None = None) -> None:
        self._base = base
        self._table = table
        self._prompt_name = prompt_name
        self.info = base.info

    def encode(self, texts: list[str], **kw: Any) -> Any:
        if kw.get("output", "sentence") != "sentence" or kw.get("prompt_name") != self._prompt_name:
            return self._base.encode(texts, **kw)
        missing = [t for t in dict.fromkeys(texts) if t not in self._table]
        if missing:
            for text, vec in zip(missing, self._base.encode(missing, **kw)):
                self._table[text] = vec
        if not texts:
            return np.zeros((0, self.info.dim), np.float32)
        return np.stack([self._table[t] for t in texts])

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return self._base.token_spans(text)  # type: ignore[no-any-return]


def document_prompt(encoder: Any) -> str | None:
    """The prompt a collection applies to what it stores (``encode_normalized``'s document role)."""
    return role_prompt(getattr(encoder.info, "prompts", None) or {}, "document")


def chunk_texts(col: Any, docs: list[dict[str, Any]]) -> list[str]:
    info = col.info()
    enc = col.encoder
    out: dict[str, None] = {}
    for d in docs:
        text = str(d["text"])
        for c in chunk_text(text, enc.token_spans, info.chunk_tokens, info.overlap):
            out[c.text_of(text)] = None
    return list(out)


def add(
    col: Any,
    docs: list[dict[str, Any]],
    settings: Settings,
    *,
    address: str | None,
    threads: int = 1,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> Any:
    texts = chunk_texts(col, docs)
    prompt_name = document_prompt(col.encoder)
    table: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="embedserve-index-") as tmp:
        source = Path(tmp) / "chunks.jsonl"
        source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
        job = corpus.Job(
            model=col.model, inputs=(str(source),), output=str(Path(tmp) / "out"), fmt="npy",
            threads=threads, prompt_name=prompt_name,
        )
        corpus.run(job, settings, address=address)
        for ids_file in sorted((Path(tmp) / "out").glob("part-*.ids.txt")):
            vectors = np.load(ids_file.with_name(ids_file.name.replace(".ids.txt", ".npy")))
            for row, vec in zip(ids_file.read_text().splitlines(), vectors):
                table[texts[int(row)]] = vec
    return col.add(docs, batch_size=batch_size, progress=progress, encoder=Precomputed(col.encoder, table, prompt_name))
