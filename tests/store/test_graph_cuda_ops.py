"""Every graph the builder makes uses only operators ONNX Runtime's CUDA execution provider has
kernels for, so on a GPU nothing falls back to the CPU between layers.

No GPU is lent to this project's tests, so this is checked on the graphs themselves: each op
(domain, type) of every family's fp32 graph and of the ``device="cuda"`` int8 graph must be in
CUDA_KERNELS, the set read from onnxruntime's core/providers/cuda/cuda_execution_provider.cc and
contrib_ops/cuda/cuda_contrib_kernels.cc (commit 004b79e). The CPU int8 graph uses
MatMulIntegerToFloat, a CPU-only contrib kernel: that is why int8 has a CUDA variant.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tinybert import make_tiny_bert
from tinyfamilies import make_nomic

from embedserve.store.graph import build_graph

ONNX = {
    "Abs", "Add", "Cast", "Concat", "ConstantOfShape", "Div", "Expand", "Gather", "Identity",
    "LayerNormalization", "MatMul", "MatMulInteger", "Max", "Mul", "NonZero", "QuantizeLinear",
    "Range", "ReduceMax", "ReduceSum", "Reshape", "ScatterND", "Shape", "Sigmoid", "Slice",
    "Split", "Sqrt", "Squeeze", "Sub", "Transpose", "Unsqueeze", "Where", "Equal", "Less",
    "Log", "Min", "Neg", "Sin", "Cos", "Softmax", "Tanh", "Erf", "Pow",
}
CONTRIB = {"BiasGelu", "FastGelu", "Gelu", "MultiHeadAttention", "RotaryEmbedding",
           "SkipLayerNormalization", "Attention"}
CUDA_KERNELS = {("", op) for op in ONNX} | {("com.microsoft", op) for op in CONTRIB}
CPU_ONLY = {("com.microsoft", "MatMulIntegerToFloat"), ("com.microsoft", "DynamicQuantizeMatMul")}


def _folders(tmp: Path) -> dict[str, Path]:
    folders = {
        "bert-mean": make_tiny_bert(tmp / "bert", hidden=64, intermediate=128),
        "bert-cls": make_tiny_bert(tmp / "cls", pooling="cls"),
        "bert-max": make_tiny_bert(tmp / "max", pooling="max"),
        "bert-sqrt": make_tiny_bert(tmp / "sqrt", pooling="mean_sqrt_len"),
        "nomic": make_nomic(tmp / "nomic"),
    }
    try:
        from tinyfamilies import make_hf_model

        import transformers  # noqa: F401

        folders["xlm-roberta"] = make_hf_model(tmp / "xlmr", "xlm-roberta")
        folders["mpnet"] = make_hf_model(tmp / "mpnet", "mpnet")
    except ImportError:  # the reference extra makes these two with transformers
        pass
    return folders


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _folders(tmp_path_factory.mktemp("families"))


def _ops(folder: Path, quantization: str, device: str) -> set[tuple[str, str]]:
    graph = build_graph(folder, quantization, device=device).graph
    return {(n.domain if n.domain != "ai.onnx" else "", n.op_type) for n in graph.node}


@pytest.mark.parametrize(("quantization", "device"), [("fp32", "cpu"), ("int8", "cuda")])
def test_every_op_has_a_cuda_kernel(folders: dict[str, Path], quantization: str, device: str) -> None:
    for family, folder in folders.items():
        missing = _ops(folder, quantization, device) - CUDA_KERNELS
        assert not missing, f"{family} {quantization}: no CUDA kernel for {sorted(missing)}"


def test_the_cpu_int8_graph_differs_only_in_its_integer_product(folders: dict[str, Path]) -> None:
    folder = folders["bert-mean"]
    cpu, cuda = _ops(folder, "int8", "cpu"), _ops(folder, "int8", "cuda")
    assert cpu - cuda == {("com.microsoft", "MatMulIntegerToFloat")}
    assert cuda - cpu == {("", "MatMulInteger")}
    assert not (cuda & CPU_ONLY)
