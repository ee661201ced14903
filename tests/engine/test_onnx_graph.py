"""The ONNX graph built from raw weights equals a plain numpy forward pass of the same weights.

Uses generated BERT folders with other layer counts and widths than all-MiniLM-L6 (the 33m path
is tested this way, without its weights), every pooling mode, and batches that need padding.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import numpy_bert
from embedserve.embedder import Embedder
from embedserve.errors import InputTooLong
from embedserve.service.loader import engine_for
from tinybert import make_tiny_bert


class _Installed:
    """The few fields of an installed model that the loader reads."""

    def __init__(self, folder: Path, name: str = "tiny:latest") -> None:
        self.folder = folder
        self.name = name
        self.digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
        self.quantization = "fp32"


TEXTS = [
    "Why is the sky blue?",
    "the man plays the guitar",
    "a",
    "search the library index for a long text about books and music " * 3,
]


@pytest.mark.parametrize(
    "layers,hidden,heads,pooling",
    [(2, 32, 4, "mean"), (12, 48, 6, "mean"), (3, 64, 8, "cls"), (2, 40, 5, "max"),
     (2, 32, 2, "mean_sqrt_len")],
)
def test_graph_matches_numpy_forward(tmp_path: Path, layers: int, hidden: int, heads: int,
                                     pooling: str) -> None:
    folder = make_tiny_bert(tmp_path / "m", layers=layers, hidden=hidden, heads=heads,
                            intermediate=hidden * 2, pooling=pooling, seed=layers)
    engine = engine_for(_Installed(folder))
    assert engine.info.dim == hidden
    assert engine.info.pooling == pooling
    ids = engine.tokenize(TEXTS)
    assert len({len(x) for x in ids}) > 1  # the batch needs padding
    got = engine.embed_ids(ids)
    assert got.shape == (len(TEXTS), hidden) and got.dtype == np.float32
    for row, seq in zip(got, ids):
        ref = numpy_bert.forward(folder, seq)
        cos = float(row @ ref / np.linalg.norm(row) / np.linalg.norm(ref))
        assert cos > 0.99999, cos
        np.testing.assert_allclose(row, ref, rtol=1e-3, atol=1e-4)


def test_window_comes_from_sentence_bert_config_not_tokenizer_json(tmp_path: Path) -> None:
    folder = make_tiny_bert(tmp_path / "m", max_seq_length=32)  # tokenizer.json says 16, fixed pad
    engine = engine_for(_Installed(folder))
    assert engine.info.max_tokens == 32
    ids = engine.tokenize(["a", "the sky " * 40])
    assert len(ids[0]) == 3  # [CLS] a [SEP]: no fixed padding
    assert len(ids[1]) == 32 and ids[1][0] == 2 and ids[1][-1] == 3  # cut with [SEP] kept
    with pytest.raises(InputTooLong) as info:
        engine.tokenize(["ok", "the sky " * 40], truncate=False)
    assert info.value.index == 1 and info.value.tokens == 82 and info.value.limit == 32


def test_graph_is_built_once_and_cached(tmp_path: Path) -> None:
    folder = make_tiny_bert(tmp_path / "m")
    engine_for(_Installed(folder))
    graphs = list((folder / "graphs").glob("*.onnx"))
    assert len(graphs) == 1
    mtime = graphs[0].stat().st_mtime_ns
    engine_for(_Installed(folder))
    assert graphs[0].stat().st_mtime_ns == mtime


def test_embedder_batches_by_length_and_keeps_order(tmp_path: Path) -> None:
    folder = make_tiny_bert(tmp_path / "m")
    emb = Embedder.from_engine(engine_for(_Installed(folder)))
    texts = [TEXTS[i % len(TEXTS)] + f" {i}" for i in range(37)]
    together = emb.encode(texts, batch_size=5, batch_tokens=64)
    one_by_one = np.stack([emb.encode(t) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=2e-6)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    raw = emb.encode(texts[:3], normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    short = emb.encode(texts[:3], dimensions=8)
    assert short.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-5)
    assert emb.encode("one text").shape == (emb.dim,)


def test_a_12_layer_model_runs_through_the_store_like_l12(tmp_path: Path) -> None:
    """all-MiniLM-L12-v2 exists only on the hub: its path (create -> store -> graph -> Embedder)
    is exercised with a generated 12-layer model of another width, against numpy."""
    from embedserve.config import Settings
    from embedserve.store.local import ModelStore

    folder = make_tiny_bert(tmp_path / "src", layers=12, hidden=64, heads=4, intermediate=128)
    home = tmp_path / "home"
    ModelStore(home).create("mini-l12:33m", source=folder)
    emb = Embedder("mini-l12:33m", settings=Settings(home=home, offline=True))
    assert emb.info.dim == 64 and emb.info.name == "mini-l12:33m"
    got = emb.encode(TEXTS, normalize=False)
    ids = emb.engine.tokenize(TEXTS)
    for row, seq in zip(got, ids):
        np.testing.assert_allclose(row, numpy_bert.forward(folder, seq), rtol=1e-3, atol=1e-4)


def test_a_graph_of_an_older_format_is_replaced(tmp_path: Path) -> None:
    folder = make_tiny_bert(tmp_path / "m")
    installed = _Installed(folder)
    (folder / "graphs").mkdir()
    stale = folder / "graphs" / f"{installed.digest[:16]}-fp32-g0.onnx"
    stale.write_bytes(b"not a graph")
    engine = engine_for(installed)
    assert engine.embed_ids(engine.tokenize(["the sky"])).shape == (1, engine.info.dim)
    assert not stale.exists()


@pytest.mark.parametrize("quantization,projection", [("fp32", "MatMul"),
                                                    ("int8", "MatMulIntegerToFloat")])
def test_qkv_projection_runs_on_the_real_tokens_only(
    tmp_path: Path, quantization: str, projection: str
) -> None:
    """Each layer's Q/K/V projection comes *before* the scatter into the padded layouts (so
    padding costs it nothing) and feeds one MultiHeadAttention per length group; ORT's fused
    Attention / QAttention, which project every padding slot too, are gone."""
    from embedserve.store.graph import build_graph

    folder = make_tiny_bert(tmp_path / "m", layers=3)
    model = build_graph(folder, quantization)
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask", "split", "width_a"]
    producer = {out: node for node in model.graph.node for out in node.output}
    ops = [node.op_type for node in model.graph.node]
    assert not {"Attention", "QAttention"} & set(ops)
    assert ops.count("MultiHeadAttention") == 3 * 2
    for node in model.graph.node:
        if node.op_type != "MultiHeadAttention":
            continue
        split = producer[node.input[0]]  # query
        reshape = producer[split.input[0]]
        scatter = producer[reshape.input[0]]
        group = producer[scatter.input[2]]  # ScatterND(zeros, token rows, packed updates)
        proj = producer[group.input[0]]
        assert [n.op_type for n in (split, reshape, scatter, group, proj)] == [
            "Split", "Reshape", "ScatterND", "Split", projection]
        assert "_qkv_w" in proj.input[1]  # the packed-token projection itself


def test_threads_spin_during_a_run_and_stop_after_it() -> None:
    from embedserve.engine.onnx import session_options

    so = session_options(2)
    assert so.intra_op_num_threads == 2
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert so.get_session_config_entry("session.force_spinning_stop") == "1"


def test_attention_split_pads_the_fewest_slots() -> None:
    from embedserve.engine.onnx import attention_split

    assert attention_split([7]) == 1
    assert attention_split([3, 3, 3]) == 3  # one group
    assert attention_split([2, 2, 2, 40]) == 3  # 3 x 2 + 1 x 40 instead of 4 x 40
    assert attention_split([5, 6, 30, 31]) == 2
    lengths = sorted(np.random.default_rng(1).integers(3, 60, 32).tolist())
    k = attention_split(lengths)
    cost = k * lengths[k - 1] + (32 - k) * lengths[-1]
    assert cost == min(j * lengths[j - 1] + (32 - j) * lengths[-1] for j in range(1, 33))


@pytest.mark.parametrize("texts", [
    ["a", TEXTS[3], "the sky", TEXTS[0], "b c", TEXTS[3] + " music", "why"],  # two groups
    ["the same text"] * 5,  # one group: the second is empty
    [TEXTS[3]],
])
def test_two_attention_groups_give_each_text_its_own_vector(tmp_path: Path, texts: list[str]) -> None:
    """Shuffled lengths: the engine sorts the rows, pads the short group to its own longest and
    the long group to the batch's, then puts the vectors back in input order."""
    from embedserve.engine.onnx import attention_split

    folder = make_tiny_bert(tmp_path / "m", layers=2, hidden=32, heads=4, intermediate=64)
    engine = engine_for(_Installed(folder))
    ids = engine.tokenize(texts)
    k = attention_split(sorted(len(x) for x in ids))
    if len(set(map(len, ids))) > 2:
        assert 1 < k < len(ids)  # the split is really exercised
    got = engine.embed_ids(ids)
    for row, seq in zip(got, ids):
        np.testing.assert_allclose(row, numpy_bert.forward(folder, seq), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("texts", [[TEXTS[3]], ["the same text"] * 4, TEXTS])
def test_int8_runs_one_text_and_an_empty_length_group(tmp_path: Path, texts: list[str]) -> None:
    """One text, or texts of one length, leave the second attention group empty (ORT's QAttention
    died of a division by zero there); the int8 vectors stay close to numpy's fp32 ones."""
    folder = make_tiny_bert(tmp_path / "m", layers=2, hidden=32, heads=4, intermediate=64)
    installed = _Installed(folder)
    installed.quantization = "int8"
    engine = engine_for(installed)
    ids = engine.tokenize(texts)
    got = engine.embed_ids(ids)
    for row, seq in zip(got, ids):
        ref = numpy_bert.forward(folder, seq)
        assert float(row @ ref / np.linalg.norm(row) / np.linalg.norm(ref)) > 0.99
