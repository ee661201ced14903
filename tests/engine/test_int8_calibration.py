"""The int8 graph's activation ranges: measured on the packaged calibration text when the graph is
built, on the right tensors, the same every time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from numpy_bert import _layer_norm
from onnx import numpy_helper
from tinybert import make_tiny_bert

from embedserve.store.folder import inspect_folder
from embedserve.store.graph import build_graph, load_weights
from embedserve.store.graph.builder import Range, activation_quant
from embedserve.store.graph.calibrate import calibration_rows


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("src") / "tiny", hidden=64, intermediate=128)


def test_activation_quant_covers_the_range_with_zero_exact() -> None:
    for lo, hi in [(-3.0, 5.0), (-0.17, 24.7), (0.5, 2.0), (-4.0, -1.0)]:
        scale, zp = activation_quant(lo, hi)
        assert scale.dtype == np.float32 and zp.dtype == np.uint8
        deq = (np.arange(256, dtype=np.float64) - int(zp)) * float(scale)
        assert deq[int(zp)] == 0.0
        assert deq[0] <= min(lo, 0.0) + float(scale) / 2 and deq[-1] >= max(hi, 0.0) - float(scale) / 2
        assert float(scale) == pytest.approx((max(hi, 0.0) - min(lo, 0.0)) / 255, rel=1e-6)


def test_the_first_projection_is_quantized_over_the_embeddings_range(folder: Path) -> None:
    """Independent check (numpy): layer 0's Q/K/V input is the embeddings' LayerNorm output; its
    min and max over the calibration text are the range the graph quantizes with."""
    graph = build_graph(folder, "int8")
    consts = {t.name: numpy_helper.to_array(t) for t in graph.graph.initializer}
    meta = inspect_folder(folder)
    w = {k: v.astype(np.float64) for k, v in load_weights(folder).items() if v.dtype.kind == "f"}
    lo, hi = np.inf, -np.inf
    rows = calibration_rows(folder / "tokenizer.json", meta.max_tokens, pairs=False)
    assert len(rows) == 64 and all(len(r) <= meta.max_tokens for r in rows)
    for ids in rows:
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][: len(ids)]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], 1e-12)
        lo, hi = min(lo, x.min()), max(hi, x.max())
    scale, zp = activation_quant(lo, hi)
    assert float(consts["l0_qkv_w_xscale"]) == pytest.approx(float(scale), rel=1e-4)
    assert abs(int(consts["l0_qkv_w_xzp"]) - int(zp)) <= 1
    # and every other quantized MatMul got a range of its own
    scales = {k: float(v) for k, v in consts.items() if k.endswith("_xscale")}
    assert len(scales) == 3 * 4 and len(set(scales.values())) == len(scales)


def test_a_cross_encoder_is_calibrated_on_pairs(folder: Path) -> None:
    rows = calibration_rows(folder / "tokenizer.json", 32, pairs=True)
    assert all(len(ids) == len(types) <= 32 for ids, types in rows)
    assert all(types[0] == 0 and types[-1] == 1 for _, types in rows)


def test_the_same_weights_give_the_same_int8_graph(folder: Path) -> None:
    """The graph cache is keyed by the weights' hash: calibration must not make it vary."""
    one, two = (build_graph(folder, "int8").SerializeToString() for _ in range(2))
    assert one == two
    cuda = onnx.ModelProto.FromString(build_graph(folder, "int8", device="cuda").SerializeToString())
    zps = {t.name: int(numpy_helper.to_array(t)) for t in cuda.graph.initializer if t.name.endswith("_xzp")}
    cpu = {t.name: int(numpy_helper.to_array(t)) for t in onnx.ModelProto.FromString(one).graph.initializer
           if t.name.endswith("_xzp")}
    assert zps and {k: v + 128 for k, v in zps.items()} == cpu  # the same integers, shifted to int8


def _one_matmul(rng_: Range, cuda: bool = False) -> tuple:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from embedserve.store.graph.builder import MS, GraphBuilder

    weight = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
    g = GraphBuilder(cuda=cuda, ranges={"w": rng_})
    g.nodes.append(helper.make_node("Identity", [g.int8_matmul("x", weight, "w")], ["y"]))
    graph = helper.make_graph(g.nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["t", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["t", 8])],
                              initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
    model.ir_version = 8
    from embedserve.engine.onnx import session_options  # the engine's (exact u8 x s8 on AVX2)

    sess = ort.InferenceSession(model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
    return sess, weight, g


def test_outlier_tokens_get_per_row_scales_the_rest_static() -> None:
    """A range whose typical row spans few steps of a static scale (outlier tokens) is quantized per
    row at run time; either way a row's result does not depend on the rows beside it."""
    from embedserve.store.graph.builder import MIN_LEVELS, Range

    x = np.random.default_rng(1).standard_normal((6, 16)).astype(np.float32)
    x[0] *= 40  # an outlier token, as calibration saw one
    wide = Range(float(x.min()), float(x.max()), float(np.median(np.abs(x).max(1))))
    tight = Range(-4.0, 4.0, 2.5)
    assert wide.levels() < MIN_LEVELS <= tight.levels()
    for rng_, per_row in ((wide, True), (tight, False)):
        for cuda in (False, True):
            sess, weight, g = _one_matmul(rng_, cuda)
            assert ("ReduceMax" in {n.op_type for n in g.nodes}) == per_row
            rows = x if per_row else x[1:]  # static: the tokens inside the calibrated range
            both = sess.run(None, {"x": rows})[0]
            alone = np.concatenate([sess.run(None, {"x": r[None]})[0] for r in rows])
            np.testing.assert_array_equal(both, alone)
            ref = rows @ weight
            rel = np.abs(both - ref).max(1) / np.abs(ref).max(1)
            assert rel.max() < 0.05, (per_row, cuda, rel)
