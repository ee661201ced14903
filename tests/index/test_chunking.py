from __future__ import annotations

import pytest

from embedserve.engine.fake import FakeEngine
from embedserve.errors import CollectionError
from embedserve.index.chunking import Chunk, check_chunk_settings, chunk_spans, chunk_text

spans_of = FakeEngine().token_spans


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def test_short_text_is_one_chunk() -> None:
    t = words(10)
    assert chunk_text(t, spans_of, 20, 4) == [Chunk(0, 0, len(t))]


def test_off_is_one_chunk_without_tokenizing() -> None:
    def boom(_: str) -> list[tuple[int, int]]:
        raise AssertionError("tokenized")

    t = words(500)
    assert chunk_text(t, boom, 0, 0) == [Chunk(0, 0, len(t))]


def test_windows_cover_the_text_fit_and_overlap() -> None:
    t = words(1000)
    chunks = chunk_text(t, spans_of, 50, 10)
    assert chunks[0].start == 0 and chunks[-1].end == len(t)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert len(spans_of(c.text_of(t))) <= 50
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end  # consecutive chunks overlap
        shared = len(spans_of(t[b.start : a.end]))
        assert shared >= 10
    assert len(spans_of(chunks[-1].text_of(t))) == 50  # the tail chunk is full-size
    assert 1000 / 40 - 2 <= len(chunks) <= 1000 / 40 + 2


def test_cuts_avoid_word_pieces() -> None:
    # tokens glued to their predecessor (word pieces): "abc" "##de" "##f" ...
    text = " ".join(["abcdef"] * 100)
    spans = []
    for i in range(100):
        base = i * 7
        spans += [(base, base + 3), (base + 3, base + 5), (base + 5, base + 6)]
    chunks = chunk_spans(spans, len(text), 20, 4)
    for c in chunks:
        assert c.start == 0 or text[c.start - 1] == " "
        assert c.end == len(text) or text[c.end] == " "


@pytest.mark.parametrize("ct,ov,msg", [(-1, 0, ">= 0"), (300, 0, "window"), (10, 10, "overlap"), (10, -1, "overlap")])
def test_bad_settings(ct: int, ov: int, msg: str) -> None:
    with pytest.raises(CollectionError, match=msg):
        check_chunk_settings(ct, ov, 254)
