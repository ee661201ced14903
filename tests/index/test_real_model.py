"""One path through the real model (all-minilm, pulled once per test session by ``real_home``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedserve.config import Settings
from embedserve.index.collection import Collection

pytestmark = pytest.mark.slow

FILLER = (
    "The committee reviewed the quarterly budget and discussed office furniture, parking permits, "
    "the cafeteria menu, holiday schedules and the renewal of software licences for the accounting "
    "department. Several members asked for clearer minutes and a shorter agenda next time. "
)
PLANTED = (
    "The lighthouse keeper on Skellig Island logged a giant squid washing ashore during the storm "
    "of March 1887, measuring nine metres from fin to tentacle."
)


def test_planted_passage_past_256_tokens_is_found(real_home: Path) -> None:
    from embedserve.embedder import Embedder

    settings = Settings(home=real_home, offline=True)
    emb = Embedder("all-minilm", settings=settings)
    head = FILLER * 12  # ~ 500 tokens before the passage
    doc = head + PLANTED + " " + FILLER * 3
    assert len(emb.token_spans(head)) > 256
    others = [{"id": f"o{i}", "text": t} for i, t in enumerate([
        "Giant pandas eat bamboo in the mountains of Sichuan.",
        "A storm damaged several fishing boats in the harbour last winter.",
        "Lighthouses guided ships along dangerous coasts before GPS.",
    ])]
    chunked = Collection.open("chunked", settings=settings, encoder=emb)  # type: ignore[arg-type]
    truncated = Collection.open("truncated", settings=settings, encoder=emb, chunk_tokens=0)  # type: ignore[arg-type]
    for col in (chunked, truncated):
        col.add([{"id": "minutes", "text": doc}, *others])
    q = "giant squid washed ashore at the lighthouse"
    top = chunked.query(q, top_k=1)[0]
    assert top.id == "minutes" and top.chunk.index > 0 and top.chunk.start > len(FILLER) * 4
    assert PLANTED in top.text
    t_scores = {h.id: h.score for h in truncated.query(q, top_k=4)}
    assert t_scores["minutes"] < top.score - 0.2
    assert chunked.info().model == "all-minilm:latest" and len(chunked.info().digest) == 64
