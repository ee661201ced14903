"""Turn a model name into a running engine: store lookup (pulling if allowed) -> graph -> session.

The one path every front uses (library, CLI, server), so they all load models the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedserve.config import Settings
from embedserve.engine.base import EngineInfo
from embedserve.errors import ModelNotFound

ProgressCallback = Callable[[Any], None]


def max_tokens_of(folder: Path) -> int:
    """The model's window: sentence_bert_config.json's max_seq_length, capped by the positions."""
    cfg = json.loads((folder / "config.json").read_text())
    limit = int(cfg.get("max_position_embeddings", 512))
    sbert = folder / "sentence_bert_config.json"
    if sbert.exists():
        seq = json.loads(sbert.read_text()).get("max_seq_length")
        if seq:
            limit = min(limit, int(seq))
    return limit


def install(
    name: str,
    settings: Settings,
    *,
    pull: bool = True,
    pull_progress: ProgressCallback | None = None,
) -> Any:
    """The installed model for ``name``; pulls it when missing if ``pull`` and not offline."""
    from embedserve.store.local import ModelStore

    store = ModelStore(settings.home)
    model = store.find(name)
    if model is not None:
        return model
    canonical = store.resolve(name)
    if settings.offline or not pull:
        raise ModelNotFound(
            f"model '{canonical}' is not installed; run: embedserve pull {canonical}",
            name=canonical,
            pull_command=f"embedserve pull {canonical}",
        )
    return store.pull(name, progress=pull_progress)


def engine_for(model: Any, *, threads: int | None = None, spinning: bool = True):  # type: ignore[no-untyped-def]
    """An ONNX engine for an installed model (builds and caches its graph on first use)."""
    from embedserve.engine.onnx import OnnxEngine
    from embedserve.engine.tokenizer import TextTokenizer
    from embedserve.store.graphs import ensure_graph
    from embedserve.store.onnx_builder import read_pooling

    folder = Path(model.folder)
    graph = ensure_graph(folder, model.digest, model.quantization)
    limit = max_tokens_of(folder)
    pooling, normalize = read_pooling(folder)
    dim = int(json.loads((folder / "config.json").read_text())["hidden_size"])
    info = EngineInfo(
        name=model.name, dim=dim, max_tokens=limit, pooling=pooling, normalize=normalize,
        digest=model.digest,
    )
    return OnnxEngine(
        graph, TextTokenizer(folder / "tokenizer.json", limit), info, threads=threads, spinning=spinning
    )


def load_engine(
    name: str,
    settings: Settings,
    *,
    threads: int | None = None,
    pull: bool = True,
    pull_progress: ProgressCallback | None = None,
    spinning: bool = True,
):  # type: ignore[no-untyped-def]
    """Engine for ``name``. ``pull=False`` (the server) raises ModelNotFound for a missing model;
    ``spinning=False`` (the server) keeps idle ONNX Runtime threads from spin-waiting."""
    model = install(name, settings, pull=pull, pull_progress=pull_progress)
    return engine_for(model, threads=threads or settings.threads, spinning=spinning)
