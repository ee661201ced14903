"""Split long texts into overlapping token windows, using the model's own tokenizer offsets.

``token_spans(text)`` gives the character ``(start, end)`` of every non-special token. A window
holds at most ``chunk_tokens`` of them (the model window less its two special tokens by default);
consecutive windows share ``overlap`` tokens, and the last window is pulled back so that it is full
(no tiny, noisy tail chunk). Window edges back off to a whitespace boundary when that costs less
than a quarter of the window, so that words are not cut in the middle of their word pieces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from embedserve.errors import CollectionError


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int  # character offsets into the document text
    end: int

    def text_of(self, text: str) -> str:
        return text[self.start : self.end]


def check_chunk_settings(chunk_tokens: int, overlap: int, window: int) -> None:
    """``chunk_tokens`` 0 means off (one chunk per document, the model truncates)."""
    if chunk_tokens < 0:
        raise CollectionError(f"chunk_tokens must be >= 0 (0 = off), got {chunk_tokens}")
    if chunk_tokens > window:
        raise CollectionError(
            f"chunk_tokens {chunk_tokens} is over the model's window of {window} tokens"
        )
    if chunk_tokens and not 0 <= overlap < chunk_tokens:
        raise CollectionError(
            f"overlap must be >= 0 and smaller than chunk_tokens ({chunk_tokens}), got {overlap}"
        )


def _glued(spans: list[tuple[int, int]], i: int) -> bool:
    """True when token ``i`` continues token ``i - 1`` with no space between (a word piece)."""
    return 0 < i < len(spans) and spans[i][0] <= spans[i - 1][1]


def _back_off(spans: list[tuple[int, int]], lo: int, cut: int, limit: int) -> int:
    """Move the cut back (at most ``limit`` tokens, never to ``lo``) to a token starting a word."""
    c = cut
    while c > lo + 1 and cut - c < limit and _glued(spans, c):
        c -= 1
    return cut if _glued(spans, c) else c


def _forward(spans: list[tuple[int, int]], lo: int, limit: int) -> int:
    """Move a window start forward (at most ``limit`` tokens) to a token starting a word."""
    c = lo
    while c - lo < limit and _glued(spans, c):
        c += 1
    return lo if _glued(spans, c) else c


def chunk_spans(
    spans: list[tuple[int, int]], text_len: int, chunk_tokens: int, overlap: int
) -> list[Chunk]:
    """Chunks of a text given its token spans. One chunk covering the text when it fits.

    The first chunk starts at 0 and the last ends at ``len(text)``, so every character is in a chunk.
    """
    n = len(spans)
    if chunk_tokens <= 0 or n <= chunk_tokens:
        return [Chunk(0, 0, text_len)]
    slack = max(1, chunk_tokens // 4)
    chunks: list[Chunk] = []
    lo = 0
    while True:
        if lo + chunk_tokens >= n:  # last window: pulled back to full size
            last = _forward(spans, max(0, n - chunk_tokens), slack)
            chunks.append(Chunk(len(chunks), spans[last][0] if chunks else 0, text_len))
            return chunks
        hi = _back_off(spans, lo, lo + chunk_tokens, slack)
        chunks.append(Chunk(len(chunks), spans[lo][0] if chunks else 0, spans[hi - 1][1]))
        nxt = max(lo + 1, hi - overlap)
        lo = max(lo + 1, _back_off(spans, lo, nxt, slack))


def chunk_text(
    text: str,
    token_spans: Callable[[str], list[tuple[int, int]]],
    chunk_tokens: int,
    overlap: int,
) -> list[Chunk]:
    if chunk_tokens <= 0:
        return [Chunk(0, 0, len(text))]
    return chunk_spans(token_spans(text), len(text), chunk_tokens, overlap)
