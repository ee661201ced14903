"""The model's own tokenizer.json, through Hugging Face ``tokenizers`` (Rust), with our window.

tokenizer.json files often ask for fixed padding and a shorter truncation (all-MiniLM's says 128);
sentence-transformers ignores that and uses ``max_seq_length`` (256) with per-batch padding. So both
are switched off here and the window is applied by us: ``[CLS] + tokens[:max-2] + [SEP]``, exactly
what the library's own truncation produces for a single sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer

from embedserve.errors import InputTooLong, InvalidInput


class TextTokenizer:
    def __init__(self, path: Path, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._full = Tokenizer.from_file(str(path))
        self._full.no_padding()
        self._full.no_truncation()
        self._cut = Tokenizer.from_file(str(path))
        self._cut.no_padding()
        self._cut.enable_truncation(max_length=max_tokens)

    def encode(self, texts: Sequence[str], *, truncate: bool = True) -> list[list[int]]:
        if isinstance(texts, str):
            raise InvalidInput("texts must be a list of strings, not a string")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidInput(f"input {i} is a {type(t).__name__}, not a string")
        if truncate:
            return [e.ids for e in self._cut.encode_batch(list(texts))]
        out = [e.ids for e in self._full.encode_batch(list(texts))]
        for i, ids in enumerate(out):
            if len(ids) > self.max_tokens:
                raise InputTooLong(i, len(ids), self.max_tokens)
        return out

    def encode_whole(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids with specials and no window at all (callers that apply their own, like ColBERT's)."""
        if isinstance(texts, str):
            raise InvalidInput("texts must be a list of strings, not a string")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidInput(f"input {i} is a {type(t).__name__}, not a string")
        return [e.ids for e in self._full.encode_batch(list(texts))]

    def encode_pairs(
        self, pairs: Sequence[tuple[str, str]], *, truncate: bool = True
    ) -> list[list[int]]:
        """``[CLS] a [SEP] b [SEP]`` per pair; over the window, cut longest-first (the longer of
        the two loses a token at a time, as Hugging Face's ``truncation=True`` does for pairs)."""
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, tuple) and len(pair) == 2
                    and all(isinstance(t, str) for t in pair)):
                raise InvalidInput(f"pair {i} is not a (query, document) pair of strings")
        if truncate:
            return [e.ids for e in self._cut.encode_batch(list(pairs))]
        out = [e.ids for e in self._full.encode_batch(list(pairs))]
        for i, ids in enumerate(out):
            if len(ids) > self.max_tokens:
                raise InputTooLong(i, len(ids), self.max_tokens)
        return out

    def token_id(self, token: str) -> int | None:
        return self._full.token_to_id(token)

    def spans(self, text: str) -> list[tuple[int, int]]:
        enc = self._full.encode(text, add_special_tokens=False)
        return [tuple(o) for o in enc.offsets]  # type: ignore[misc]
