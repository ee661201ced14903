"""embedserve models in mteb's benchmarks (``pip install 'embedserve[mteb]'``).

::

    import mteb
    from embedserve.integrations.mteb import EmbedserveEncoder

    model = EmbedserveEncoder("all-minilm")              # any installed (or pullable) model
    results = mteb.evaluate(model, tasks=mteb.get_tasks(tasks=["STSBenchmark"]))

:class:`EmbedserveEncoder` follows mteb's ``EncoderProtocol``: ``encode(inputs: DataLoader, *,
task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs) -> array``, cosine
``similarity``/``similarity_pairwise`` (from mteb's ``AbsEncoder``), and ``mteb_model_meta``
filled from the store (name, digest as revision, parameters, dimension, window, licence). Vectors
come from embedserve's own ONNX engine, normalised, so mteb measures what ``serve`` returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from embedserve.errors import UserError

try:
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ModelMeta, ScoringFunction
except ImportError as exc:  # pragma: no cover - exercised by the missing-extra test
    raise UserError("mteb is not installed; pip install 'embedserve[mteb]'") from exc

__all__ = ["EmbedserveEncoder"]


def _texts(batch: Any) -> list[str]:
    if isinstance(batch, dict):
        if "text" in batch:
            return [str(t) for t in batch["text"]]
        if "title" in batch and "body" in batch:  # a corpus batch without a joined text column
            return [f"{t} {b}".strip() for t, b in zip(batch["title"], batch["body"])]
        raise UserError(f"embedserve encodes text; this batch has {sorted(batch)}")
    return [str(t) for t in batch]


class EmbedserveEncoder(AbsEncoder):  # type: ignore[misc]
    """An installed embedserve model as an mteb encoder."""

    def __init__(
        self,
        model_name: str = "all-minilm",
        revision: str | None = None,
        *,
        device: str | None = None,
        embedder: Any = None,
        **kwargs: Any,
    ) -> None:
        if embedder is None:
            from embedserve.embedder import Embedder

            embedder = Embedder(model_name, **kwargs)
        self.embedder = embedder
        info = embedder.info
        if revision is not None and not str(info.digest).startswith(revision):
            raise UserError(f"{info.name} is revision {info.digest[:12]}, not {revision}")
        self.mteb_model_meta = ModelMeta.create_empty(
            overwrites={
                "name": f"embedserve/{info.name.replace(':', '-')}",
                "revision": str(info.digest)[:12] or None,
                "embed_dim": int(info.dim),
                "max_tokens": int(info.max_tokens),
                "similarity_fn_name": ScoringFunction.COSINE,
                "framework": ["ONNX"],
                "open_weights": True,
            }
        )

    def encode(
        self,
        inputs: Iterable[Any],
        *,
        task_metadata: Any = None,
        hf_split: str = "",
        hf_subset: str = "",
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        parts = [self.embedder.encode(_texts(batch)) for batch in inputs]
        if not parts:
            return np.zeros((0, int(self.embedder.info.dim)), dtype=np.float32)
        return np.concatenate([np.asarray(p, dtype=np.float32) for p in parts])
