"""Turn a model name into a running engine: store lookup (pulling if allowed) -> graph -> session.

The one path every front uses (library, CLI, server), so they all load models the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedserve.config import Settings
from embedserve.engine.base import EngineInfo

ProgressCallback = Callable[[Any], None]


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
    if settings.offline or not pull:
        raise store.not_installed(name)  # the pull command, or close names for an unknown one
    return store.pull(name, progress=pull_progress)


def engine_for(model: Any, *, threads: int | None = None, device: str = "auto"):  # type: ignore[no-untyped-def]
    """An ONNX engine for an installed model (builds and caches its graph on first use) on
    ``device`` (``EMBEDSERVE_DEVICE``: auto, cpu, cuda; int8 has a graph variant per device)."""
    from embedserve.engine.onnx import OnnxEngine, graph_device, providers
    from embedserve.engine.tokenizer import TextTokenizer
    from embedserve.store.folder import inspect_folder
    from embedserve.store.graphs import ensure_graph
    from embedserve.store.onnx_builder import GRAPH_FORMAT

    folder = Path(model.folder)
    meta = inspect_folder(folder)  # window, pooling, normalisation, kind: the folder's own metadata
    wanted = graph_device(providers(device))
    graph = ensure_graph(folder, model.digest, model.quantization, wanted)
    info = EngineInfo(
        name=model.name, dim=meta.dim, max_tokens=meta.max_tokens, pooling=meta.pooling,
        normalize=meta.normalize, digest=model.digest,
        variant=f"{model.quantization}-g{GRAPH_FORMAT}", kind=meta.kind, prompts=dict(meta.prompts),
        default_prompt_name=meta.default_prompt_name,
    )
    if meta.kind == "colbert":
        from embedserve.engine.colbert import ColbertEngine
        from embedserve.store.kinds import colbert_spec

        spec = colbert_spec(folder)
        tokenizer = TextTokenizer(folder / "tokenizer.json", meta.max_tokens)
        return ColbertEngine(graph, tokenizer, info, spec, threads=threads)
    if meta.kind == "reranker":
        from embedserve.engine.crossencoder import CrossEncoderEngine
        from embedserve.store.kinds import activation_of

        tokenizer = TextTokenizer(folder / "tokenizer.json", meta.max_tokens)
        return CrossEncoderEngine(graph, tokenizer, info, activation_of(meta.config), threads=threads)
    tokenizer = TextTokenizer(folder / "tokenizer.json", meta.max_tokens)
    engine = OnnxEngine(graph, tokenizer, info, threads=threads, device=device)
    if engine.device != wanted:  # auto: onnxruntime-gpu without a working GPU runs on the CPU
        cpu_graph = ensure_graph(folder, model.digest, model.quantization, engine.device)
        if cpu_graph != graph:
            engine = OnnxEngine(cpu_graph, tokenizer, info, threads=threads, device="cpu")
    return engine


def load_engine(
    name: str,
    settings: Settings,
    *,
    threads: int | None = None,
    pull: bool = True,
    pull_progress: ProgressCallback | None = None,
):  # type: ignore[no-untyped-def]
    """Engine for ``name``. ``pull=False`` (the server) raises ModelNotFound for a missing model."""
    model = install(name, settings, pull=pull, pull_progress=pull_progress)
    return engine_for(model, threads=threads or settings.threads, device=settings.device)
