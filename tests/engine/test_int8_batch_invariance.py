"""int8 quantises activations with constants, so a text's vector does not depend on its batch."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from tinybert import WORDS, make_tiny_bert

from embedserve.config import Settings
from embedserve.embedder import Embedder
from embedserve.store.local import ModelStore


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    src = make_tiny_bert(tmp_path_factory.mktemp("src") / "tiny", hidden=64, intermediate=128)
    ModelStore(home).create("tiny:int8", source=src, quantize="int8")
    return home


@pytest.fixture(scope="module")
def int8(home: Path) -> Embedder:
    return Embedder("tiny:int8", settings=Settings(home=home, offline=True))


def test_a_text_gets_the_same_int8_vector_alone_and_in_any_batch(int8: Embedder) -> None:
    rng = random.Random(3)
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(1, 20))) for _ in range(40)]
    texts[7] = "the sky is blue " * 6  # a long row with large activations beside short ones
    alone = np.concatenate([int8.encode([t], normalize=False) for t in texts])
    for batch_size in (40, 13, 5):
        order = list(range(len(texts)))
        rng.shuffle(order)
        batched = np.empty_like(alone)
        batched[order] = int8.encode([texts[i] for i in order], batch_size=batch_size,
                                     normalize=False)
        # per-tensor scales computed per call (DynamicQuantizeMatMul) moved these by ~1e-2; what is left is
        # float rounding in the fp32 attention over different padded widths
        np.testing.assert_allclose(batched, alone, rtol=0, atol=2e-5 * np.abs(alone).max())


def test_the_int8_graph_quantises_with_constants(int8: Embedder, home: Path) -> None:
    """Static ranges: each MatMul's input is quantized by one QuantizeLinear whose scale and zero
    point are constants of the graph; nothing measures the batch at run time."""
    import onnx

    (graph,) = ModelStore(home).get("tiny:int8").folder.glob("graphs/*-int8-*.onnx")
    model = onnx.load(str(graph)).graph
    constants = {t.name for t in model.initializer}
    ops = [n.op_type for n in model.node]
    assert not {"DynamicQuantizeMatMul", "DynamicQuantizeLinear", "ReduceMax", "ReduceMin",
                "Abs"} & set(ops)
    quantize = [n for n in model.node if n.op_type == "QuantizeLinear"]
    assert all(n.input[1] in constants and n.input[2] in constants for n in quantize)
    assert ops.count("MatMulIntegerToFloat") == len(quantize) == 3 * 4
