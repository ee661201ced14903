"""Cross-encoders on the ONNX engine: (query, document) pairs in, one relevance logit out.

``[CLS] query [SEP] document [SEP]`` with token type 1 from the document on, cut longest-first to
the window, exactly as sentence-transformers' ``CrossEncoder`` tokenises a pair. The graph's head
is BERT's pooler (dense + tanh on [CLS]) and the classification linear; ``score_ids`` returns the
raw logits and :func:`activate` applies the model's own activation (sigmoid unless its config says
otherwise), which is what ``CrossEncoder.predict`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embedserve.engine.base import EngineInfo
from embedserve.engine.onnx import OnnxEngine, unsort
from embedserve.engine.tokenizer import TextTokenizer
from embedserve.errors import EngineError, InvalidInput


def activate(logits: np.ndarray, activation: str) -> np.ndarray:
    if activation == "sigmoid":
        return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
    return logits.astype(np.float32)


class CrossEncoderEngine(OnnxEngine):
    def __init__(
        self, graph: Path, tokenizer: TextTokenizer, info: EngineInfo, activation: str,
        *, threads: int | None = None,
    ) -> None:
        super().__init__(graph, tokenizer, info, threads=threads)
        self.activation = activation
        sep = tokenizer.token_id("[SEP]")
        if sep is None:
            raise EngineError("the tokenizer has no [SEP] token")
        self.sep = sep

    def tokenize_pairs(
        self, pairs: Sequence[tuple[str, str]], *, truncate: bool = True
    ) -> list[list[int]]:
        return self.tokenizer.encode_pairs(pairs, truncate=truncate)

    def extra_feeds(self, rows, ids, mask):  # type: ignore[no-untyped-def]
        # segment B starts after the first [SEP]: type = how many [SEP]s came strictly before
        is_sep = (ids == self.sep).astype(np.int64)
        types = (np.cumsum(is_sep, axis=1) - is_sep > 0).astype(np.int64) * mask
        return {"token_type_ids": types}

    def score_ids(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        if not batch:
            return np.zeros(0, np.float32)
        order, _, (out,) = self.run_sorted(batch, ["scores"])
        return unsort(out[:, 0].copy(), order)

    def embed_ids(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        raise InvalidInput(f"model {self.info.name!r} is a reranker; it scores pairs, it does not embed")
