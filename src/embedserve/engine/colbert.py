"""ColBERT checkpoints on the ONNX engine: [Q]/[D] markers, [MASK] query expansion, skiplist.

Tokenisation follows colbert-ai (and PyLate, which loads the same checkpoints):

* document: ``[CLS] [D] tokens [SEP]``, at most ``doc_maxlen`` ids; its punctuation tokens'
  vectors are dropped when the checkpoint says ``mask_punctuation``.
* query: ``[CLS] [Q] tokens [SEP]`` padded to exactly ``query_maxlen`` with ``[MASK]``: the expansion
  tokens are computed and kept (query augmentation) but, unless ``attend_to_mask_tokens``, no token
  attends to them (the graph's separate ``key_mask``).

A row is a query when its second id is the query marker, so ``embed_tokens`` needs no flag. The
graph projects the last hidden state (``linear.weight``); vectors come back un-normalised and the
library normalises each one, as ColBERT does. ``embed_ids`` (one dense vector, for collections'
first stage) is the mean of the normalised token vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embedserve.engine.base import EngineInfo
from embedserve.engine.onnx import OnnxEngine
from embedserve.engine.tokenizer import TextTokenizer
from embedserve.errors import EngineError, InputTooLong
from embedserve.store.kinds import ColbertSpec
from embedserve.vectors import l2_normalize


class ColbertEngine(OnnxEngine):
    def __init__(
        self, graph: Path, tokenizer: TextTokenizer, info: EngineInfo, spec: ColbertSpec,
        *, threads: int | None = None,
    ) -> None:
        super().__init__(graph, tokenizer, info, threads=threads)
        self.spec = spec

        def need(token: str) -> int:
            got = tokenizer.token_id(token)
            if got is None:
                raise EngineError(f"the tokenizer has no {token} token")
            return got

        self.query_marker = need(spec.query_marker)
        self.doc_marker = need(spec.doc_marker)
        self.mask_id = need("[MASK]")
        skip = {tokenizer.token_id(p) for p in spec.punctuation()} if spec.mask_punctuation else set()
        self.skiplist = np.array(sorted(i for i in skip if i is not None), np.int64)

    def _marked(self, texts: Sequence[str], marker: int, limit: int, truncate: bool) -> list[list[int]]:
        out = []
        for i, ids in enumerate(self.tokenizer.encode_whole(texts)):
            if len(ids) + 1 > limit:
                if not truncate:
                    raise InputTooLong(i, len(ids) + 1, limit)
                ids = ids[: limit - 2] + ids[-1:]
            out.append([ids[0], marker, *ids[1:]])
        return out

    def tokenize(self, texts: Sequence[str], *, truncate: bool = True) -> list[list[int]]:
        """Document ids: ``[CLS] [D] ... [SEP]``, at most ``doc_maxlen``."""
        return self._marked(texts, self.doc_marker, self.spec.doc_maxlen, truncate)

    def tokenize_query(self, texts: Sequence[str], *, truncate: bool = True) -> list[list[int]]:
        """Query ids: ``[CLS] [Q] ... [SEP]`` then ``[MASK]`` up to exactly ``query_maxlen``."""
        n = self.spec.query_maxlen
        return [ids + [self.mask_id] * (n - len(ids))
                for ids in self._marked(texts, self.query_marker, n, truncate)]

    def _expansion(self, row: Sequence[int]) -> int:
        """How many trailing ids of a query row are [MASK] expansion (0 for a document)."""
        if len(row) < 2 or row[1] != self.query_marker:
            return 0
        k = len(row)
        while k > 0 and row[k - 1] == self.mask_id:
            k -= 1
        return len(row) - k

    def extra_feeds(self, rows, ids, mask):  # type: ignore[no-untyped-def]
        keys = mask.copy()
        if not self.spec.attend_to_mask_tokens:
            for r, row in enumerate(rows):
                tail = self._expansion(row)
                if tail:
                    keys[r, len(row) - tail : len(row)] = 0
        return {"key_mask": keys}

    def kept_tokens(self, vectors: np.ndarray, row: Sequence[int]) -> np.ndarray:
        """All of a query's (markers and expansion included); a document's without punctuation."""
        if len(self.skiplist) and len(row) > 1 and row[1] == self.doc_marker:
            return vectors[~np.isin(np.asarray(row), self.skiplist)]
        return vectors

    def embed_ids(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        """A dense vector per input: the mean of its normalised token vectors (un-normalised)."""
        return self._dense(self.embed_tokens(batch))

    def embed_both(self, batch: Sequence[Sequence[int]]) -> tuple[np.ndarray, list[np.ndarray]]:
        tokens = self.embed_tokens(batch)
        return self._dense(tokens), tokens

    def _dense(self, tokens: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(tokens), self.info.dim), np.float32)
        for i, t in enumerate(tokens):
            if len(t):
                out[i] = l2_normalize(t).mean(axis=0)
        return out
