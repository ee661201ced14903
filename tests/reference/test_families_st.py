"""Each transformers-native family, built from its weights, equals sentence-transformers.

Tiny random-weight models made by ``transformers`` (tests/tinyfamilies.py) go through the store
(``create --from DIR``) and the Embedder; sentence-transformers loads the same folder as the
reference. Texts include non-Latin scripts (the Unigram tokenizer's path) and texts past the
window (truncation, and MPNet's log-spaced relative buckets). Bar: min cosine >= 0.9999.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedserve.config import Settings
from embedserve.embedder import Embedder
from embedserve.store.local import ModelStore
from tinyfamilies import CORPUS, make_hf_model

pytestmark = pytest.mark.reference

TEXTS = CORPUS + [
    "a", "the sky is blue " * 40, "der Hund " * 60, ("why " * 7 + "books ") * 12,
]


@pytest.fixture(scope="module")
def st() -> object:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return pytest.importorskip("sentence_transformers")


@pytest.mark.parametrize(
    "family,pooling,max_seq_length",
    [("roberta", "mean", 40), ("xlm-roberta", "mean", 40), ("xlm-roberta", "cls", 48),
     ("mpnet", "mean", 200), ("mpnet", "max", 40), ("bert", "cls", 40)],
)
def test_family_equals_sentence_transformers(tmp_path: Path, st: object, family: str,
                                             pooling: str, max_seq_length: int) -> None:
    folder = make_hf_model(tmp_path / "src", family, pooling=pooling,
                           max_seq_length=max_seq_length, seed=len(family))
    home = tmp_path / "home"
    ModelStore(home).create("tiny:latest", source=folder)
    emb = Embedder("tiny:latest", settings=Settings(home=home, offline=True))
    reference = st.SentenceTransformer(str(folder), device="cpu")  # type: ignore[attr-defined]
    assert emb.info.max_tokens == reference.max_seq_length == max_seq_length
    ours = [len(ids) for ids in emb.engine.tokenize(TEXTS)]
    theirs = reference.tokenizer(TEXTS, truncation=True, max_length=max_seq_length)["input_ids"]
    assert ours == [len(ids) for ids in theirs]
    assert max(ours) == max_seq_length  # some texts really pass the window
    got = emb.encode(TEXTS, batch_size=5)
    want = reference.encode(TEXTS, normalize_embeddings=True, batch_size=3)
    cos = (got * want).sum(1)
    assert cos.min() >= 0.9999, (family, cos.min())
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_a_roberta_window_is_its_position_table_less_the_offset(tmp_path: Path, st: object) -> None:
    import json

    folder = make_hf_model(tmp_path / "src", "xlm-roberta", max_seq_length=40)
    (folder / "sentence_bert_config.json").unlink()
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    from embedserve.store.folder import inspect_folder

    info = inspect_folder(folder)
    assert info.architecture == "roberta"
    assert info.max_tokens == 40  # 42 positions, ids start at padding_idx + 1 = 2


def test_mpnet_buckets_equal_transformers_for_every_offset(st: object) -> None:
    import torch
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    from embedserve.store.graph.positions import relative_buckets

    offsets = torch.arange(-1100, 1100)
    want = MPNetEncoder.relative_position_bucket(offsets, num_buckets=32).numpy()
    np.testing.assert_array_equal(relative_buckets(offsets.numpy(), 32, 128), want)


def test_e5_style_prompts_equal_sentence_transformers(tmp_path: Path, st: object) -> None:
    prompts = {"query": "query: ", "passage": "passage: "}
    folder = make_hf_model(tmp_path / "src", "xlm-roberta", max_seq_length=40, prompts=prompts)
    home = tmp_path / "home"
    ModelStore(home).create("e5-tiny", source=folder)
    emb = Embedder("e5-tiny", settings=Settings(home=home, offline=True))
    reference = st.SentenceTransformer(str(folder), device="cpu")  # type: ignore[attr-defined]
    assert {k: v for k, v in reference.prompts.items() if v} == prompts == emb.prompts
    for name in prompts:
        got = emb.encode(TEXTS, prompt_name=name)
        want = reference.encode(TEXTS, prompt_name=name, normalize_embeddings=True)
        assert (got * want).sum(1).min() >= 0.9999
        theirs = reference.tokenize([prompts[name] + t for t in TEXTS])["attention_mask"].sum(1)
        assert emb.count_tokens(TEXTS, prompt_name=name) == theirs.tolist()
