"""What the bench times: an engine is anything that encodes a list, encodes one text and counts
tokens. Adapters for embedserve's ``Embedder`` and for sentence-transformers, and their loaders,
which also time the model load.

sentence-transformers is imported only inside :func:`load_sentence_transformers` (the
``reference`` extra); without it that function raises a one-line :class:`UserError`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from embedserve.bench.timing import current_rss_mb, timed
from embedserve.errors import UserError

ST_NAME = "sentence-transformers"
ST_BATCH = 32
ST_MISSING = "sentence-transformers is not installed; pip install 'embedserve[reference]'"


class BenchEngine(Protocol):
    name: str
    kind: str  # "embedserve" | "sentence-transformers" | anything a test likes

    def encode(self, texts: list[str]) -> Any: ...

    def encode_one(self, text: str) -> Any: ...

    def count_tokens(self, texts: list[str]) -> int:
        """Real tokens the model sees: unpadded, truncated at its window, special tokens included."""
        ...


@dataclass
class LoadInfo:
    """How long the engine took to become ready, and the memory it brought."""

    name: str
    kind: str
    load_s: float  # construct from the installed store, graph already built and cached
    first_load_s: float | None = None  # the same with the graph built first (None: not measured)
    rss_mb: float = float("nan")  # current RSS of the process right after loading
    rss_delta_mb: float = float("nan")  # what loading added to it


class EmbedderBench:
    """embedserve's library entry point, with its own batching (length-sorted, token budget)."""

    kind = "embedserve"

    def __init__(self, name: str, embedder: Any) -> None:
        self.name = name
        self.embedder = embedder

    def encode(self, texts: list[str]) -> Any:
        return self.embedder.encode(texts)

    def encode_one(self, text: str) -> Any:
        return self.embedder.encode(text)

    def count_tokens(self, texts: list[str]) -> int:
        return sum(self.embedder.count_tokens(texts))


class SentenceTransformersBench:
    """A ``SentenceTransformer`` as its users call it: ``encode(texts, batch_size=32)``; it
    normalises when the model's own pipeline ends in ``Normalize``, as embedserve does."""

    kind = ST_NAME

    def __init__(self, model: Any, name: str = ST_NAME, batch_size: int = ST_BATCH) -> None:
        self.name = name
        self.model = model
        self.batch_size = batch_size

    def encode(self, texts: list[str]) -> Any:
        return self.model.encode(texts, batch_size=self.batch_size, show_progress_bar=False)

    def encode_one(self, text: str) -> Any:
        return self.model.encode(text, show_progress_bar=False)

    def count_tokens(self, texts: list[str]) -> int:
        window = self.model.max_seq_length
        ids = self.model.tokenizer(texts, truncation=True, max_length=window)["input_ids"]
        return sum(len(x) for x in ids)


def load_embedder(
    name: str, settings: Any, *, first_build: bool = True
) -> tuple[EmbedderBench, LoadInfo]:
    """Load ``name`` (already installed) and time it: with its graph cached, and, when
    ``first_build``, with the graph built first (into a temporary folder, so the store's cache is
    left alone; or for real when the cache was empty). Imports are warmed before timing."""
    import onnxruntime  # noqa: F401  (imports are not part of a load)
    import tokenizers  # noqa: F401

    from embedserve.embedder import Embedder
    from embedserve.store.graph import build_graph, save_graph
    from embedserve.store.graphs import graph_file
    from embedserve.store.local import ModelStore

    installed = ModelStore(settings.home).get(name)
    before = current_rss_mb()
    cached = graph_file(installed.folder, installed.digest, installed.quantization).exists()
    holder: list[Embedder] = []

    def construct() -> None:
        holder.clear()  # the previous instance goes before the next one is built
        holder.append(Embedder(name, settings=settings))

    first: float | None = None
    if not cached:  # this load builds and caches the graph: that is the first-build time
        first = timed(construct)
    load_s = timed(construct)
    if cached and first_build:
        with tempfile.TemporaryDirectory(prefix="embedserve-bench-") as tmp:
            build = timed(
                lambda: save_graph(
                    build_graph(installed.folder, installed.quantization), Path(tmp) / "g.onnx"
                )
            )
        first = build + load_s
    info = LoadInfo(name=holder[0].info.name, kind="embedserve", load_s=load_s, first_load_s=first)
    info.rss_mb = current_rss_mb()
    info.rss_delta_mb = info.rss_mb - before
    return EmbedderBench(info.name, holder[0]), info


def import_sentence_transformers() -> Any:
    """The ``sentence_transformers`` module, or a one-line UserError naming the extra."""
    try:
        import sentence_transformers
    except ImportError:
        raise UserError(ST_MISSING) from None
    return sentence_transformers


def load_sentence_transformers(
    folder: Path, *, window: int = 256, threads: int | None = None
) -> tuple[SentenceTransformersBench, LoadInfo]:
    """sentence-transformers on CPU from the same installed folder (no network), timed."""
    st = import_sentence_transformers()
    import torch

    from embedserve.config import cpu_quota

    torch.set_num_threads(threads or cpu_quota())
    holder: list[Any] = []
    before = current_rss_mb()
    load_s = timed(lambda: holder.append(st.SentenceTransformer(str(folder), device="cpu")))
    model = holder[0]
    model.max_seq_length = window
    after = current_rss_mb()
    info = LoadInfo(ST_NAME, ST_NAME, load_s, rss_mb=after, rss_delta_mb=after - before)
    return SentenceTransformersBench(model), info
