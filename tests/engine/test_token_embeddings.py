"""``encode(..., output="token")``: the graph's unpooled last hidden state, specials dropped."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import numpy_bert
from embedserve.embedder import Embedder
from embedserve.errors import InputTooLong, InvalidInput
from embedserve.service.loader import engine_for
from tinybert import make_tiny_bert


class Installed:
    def __init__(self, folder: Path, name: str = "tiny:latest", quantization: str = "fp32") -> None:
        self.folder = folder
        self.name = name
        self.digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
        self.quantization = quantization


TEXTS = ["Why is the sky blue?", "a", "the man plays the guitar " * 4, "dog"]


def test_token_vectors_equal_numpy_hidden_states(tmp_path: Path) -> None:
    folder = make_tiny_bert(tmp_path / "m", layers=2, hidden=32, heads=4, intermediate=64)
    emb = Embedder.from_engine(engine_for(Installed(folder)))
    raw = emb.encode(TEXTS, output="token", normalize=False)
    ids = emb.engine.tokenize(TEXTS)
    assert len(raw) == len(TEXTS)
    for vecs, seq, text in zip(raw, ids, TEXTS):
        assert vecs.dtype == np.float32 and vecs.shape == (len(seq) - 2, 32)
        ref = numpy_bert.hidden_states(folder, seq)[1:-1]
        np.testing.assert_allclose(vecs, ref, rtol=1e-3, atol=1e-4)
    unit = emb.encode(TEXTS, output="token")
    np.testing.assert_allclose(np.linalg.norm(unit[2], axis=1), 1.0, atol=1e-5)
    # one string -> one array; rows line up with token_spans
    single = emb.encode(TEXTS[0], output="token")
    assert single.shape == (len(emb.token_spans(TEXTS[0])), 32)
    np.testing.assert_allclose(single, unit[0], atol=1e-6)
    # the pooled output of the same graph is unchanged: mean of the (unnormalised) token rows
    mean_all = numpy_bert.hidden_states(folder, ids[3]).mean(0)
    np.testing.assert_allclose(emb.encode(TEXTS[3], normalize=False), mean_all, rtol=1e-3, atol=1e-4)


def test_token_output_errors(tmp_path: Path) -> None:
    folder = make_tiny_bert(tmp_path / "m", layers=1, hidden=16, heads=2, intermediate=32,
                            max_seq_length=8)
    emb = Embedder.from_engine(engine_for(Installed(folder)))
    with pytest.raises(InputTooLong) as info:
        emb.encode(["ok", "the man plays the guitar and the dog runs"], output="token",
                   truncate=False)
    assert info.value.index == 1
    with pytest.raises(InvalidInput, match="output must be"):
        emb.encode(["x"], output="tokens")
    cut = emb.encode(["the man plays the guitar and the dog runs"], output="token")
    assert cut[0].shape == (6, 16)  # 8-token window minus [CLS] and [SEP]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and x.tobytes() == y.tobytes() for x, y in zip(a, b))


def test_sentence_and_token_vectors_from_one_run_are_bitwise_those_of_two(tmp_path: Path) -> None:
    from embedserve.config import Settings
    from embedserve.store.local import ModelStore
    from tinymodels import make_tiny_colbert

    bert = Embedder.from_engine(engine_for(Installed(make_tiny_bert(
        tmp_path / "m", layers=2, hidden=32, heads=4, intermediate=64))))
    settings = Settings(home=tmp_path / "home", offline=True, cache_mb=0)
    ModelStore(settings.home).create("tiny-colbert", source=make_tiny_colbert(tmp_path / "colbert"))
    colbert = Embedder("tiny-colbert", settings=settings, cache=False)
    docs = [*TEXTS, "a dog, a cat. and a bird!"]  # (ColBERT drops a document's punctuation)
    for emb in (bert, colbert):
        runs = 0
        real = emb.engine.run_sorted

        def counted(*a: object, real=real, **k: object) -> object:  # type: ignore[no-untyped-def]
            nonlocal runs
            runs += 1
            return real(*a, **k)

        emb.engine.run_sorted = counted  # type: ignore[method-assign]
        dense, tokens = emb.encode_with_tokens(docs, batch_size=2)
        assert runs == 3  # 5 texts in batches of 2: one run each, not two
        assert dense.tobytes() == emb.encode(docs, batch_size=2).tobytes()
        assert _same(tokens, emb.encode(docs, output="token", batch_size=2))
        raw = emb.engine.embed_both([emb.engine.tokenize(docs)[0]])  # type: ignore[attr-defined]
        assert raw[0].tobytes() == emb.engine.embed_ids([emb.engine.tokenize(docs)[0]]).tobytes()
