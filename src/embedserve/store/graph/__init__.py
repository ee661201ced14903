"""Build an ONNX graph for a sentence-transformers model straight from its weights.

No torch: the weights come from ``model.safetensors`` (numpy), the architecture and shape from
``config.json`` (:mod:`embedserve.store.family`: BERT, RoBERTa/XLM-R, MPNet, NomicBERT), the pooling from the
folder's own ``modules.json`` / ``1_Pooling/config.json``. The graph is written directly in
onnxruntime's fused form (the way onnxruntime-genai's model builder does it), in three stages:

* :mod:`.embeddings`: ``Gather`` word + position (+ token-type 0) -> ``LayerNormalization``
* :mod:`.encoder`: the layers on packed real tokens, attention on two padded length groups
  (:mod:`.layout`), positions inside attention where the family has them (:mod:`.positions`)
* :mod:`.heads`: the outputs (``pooled``, ``tokens``; ``colbert``'s projected tokens, a
  cross-encoder's ``scores``)

Inputs: ``input_ids`` int64 [batch, seq], ``attention_mask`` int64 [batch, seq], ``split`` and
``width_a`` int64 [1] (rows sorted by length; the first ``split`` rows need at most ``width_a``
columns: attention pads them only that far); ``key_mask`` and ``token_type_ids`` int64 [batch,
seq] where a head needs them. Outputs: the heads' (``pooled`` float32 [batch, hidden], ...).
``quantization="int8"``: per-channel int8 weight MatMuls, activations quantized with static ranges
calibrated when the graph is built, or per token row where calibration saw outlier tokens
(batch-invariant either way; :mod:`.calibrate`, :meth:`.builder.GraphBuilder.int8_matmul`). ``device="cuda"``: int8 built from
ops that have CUDA kernels (the fp32 graph is the same for both devices).
Nothing assumes a layer count or a width: all of it is read from config.json.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import onnx
from onnx import TensorProto, helper

from embedserve.errors import StoreError
from embedserve.store.family import Family, Shape, detect
from embedserve.store.folder import inspect_folder
from embedserve.store.graph.builder import MS, GraphBuilder, quantize_per_channel
from embedserve.store.graph.calibrate import Probe, calibration_rows, measure_ranges
from embedserve.store.graph.embeddings import embed
from embedserve.store.graph.encoder import Encoder
from embedserve.store.graph.heads import HEADS, NEEDS, HeadInput
from embedserve.store.graph.layout import Groups
from embedserve.store.graph.weights import Weights, load_weights
from embedserve.store.kinds import heads_of

if TYPE_CHECKING:
    from embedserve.store.folder import FolderInfo

GRAPH_FORMAT = 8  # bump when the graph layout changes, so cached graphs are rebuilt (6: per-row int8; 7: heads by kind, tokens output; 8: static int8 activations)

__all__ = [
    "GRAPH_FORMAT",
    "Family",
    "Shape",
    "build_graph",
    "detect",
    "load_weights",
    "quantize_per_channel",
    "save_graph",
]


def build_graph(folder: Path, quantization: str = "fp32",
                heads: Sequence[str] | None = None, device: str = "cpu") -> onnx.ModelProto:
    """Build the fused graph for the sentence-transformers folder ``folder``.

    ``quantization="int8"``: the weight MatMuls (not the attention products, LayerNorms, softmax or
    embeddings) use per-channel int8 weights and int8 activations with static ranges, measured by
    running the float graph on packaged calibration text first (:mod:`.calibrate`), or per-row
    scales where that text showed outlier tokens.
    ``heads``: names in :data:`.heads.HEADS`, each adding its outputs; by default the folder's
    kind decides (:func:`embedserve.store.kinds.heads_of`: an embedder gets ``pooled`` and
    ``tokens``, a ColBERT checkpoint ``colbert``, a cross-encoder ``scores``).
    """
    int8 = quantization == "int8"
    if quantization not in ("fp32", "int8"):
        raise StoreError(f"unknown quantization {quantization!r}")
    meta = inspect_folder(folder)  # the folder's own metadata decides pooling
    heads = tuple(heads) if heads is not None else heads_of(meta.kind)
    unknown = [h for h in heads if h not in HEADS]
    if unknown or not heads:
        raise StoreError(f"unknown graph head {unknown[0] if unknown else '(none)'!r}; "
                         f"known: {', '.join(HEADS)}")
    fam, shape = detect(meta.config)
    w = Weights(load_weights(folder))
    needs = {need for h in heads for need in NEEDS.get(h, ())}
    ranges = None
    if int8:  # static activation ranges, measured on the float graph of the same layout
        probe = Probe()
        rows = calibration_rows(folder / "tokenizer.json", meta.max_tokens, "token_type_ids" in needs)
        ranges = measure_ranges(_assemble(probe, fam, shape, w, meta, heads, needs, int8),
                                probe.inputs, rows, needs)
    g = GraphBuilder(cuda=device == "cuda", ranges=ranges)
    return _assemble(g, fam, shape, w, meta, heads, needs, int8)


def _assemble(g: GraphBuilder, fam: Family, shape: Shape, w: Weights, meta: FolderInfo,
              heads: Sequence[str], needs: set[str], int8: bool) -> onnx.ModelProto:
    x = embed(g, fam, shape, w, token_types="token_type_ids" in needs)
    groups = Groups(g, shape.hidden, keys="key_mask" if "key_mask" in needs else "")
    encoder = Encoder(g, fam, shape, w, groups, int8)
    x = groups.whole.pack(x)
    for i in range(shape.layers):
        x = encoder.layer(i, x)

    head_input = HeadInput(g, x, groups.whole, fam, shape, w, meta.pooling)
    outputs = []
    for name in heads:
        for out_name, value, info in HEADS[name](head_input):
            g.nodes.append(helper.make_node("Identity", [value], [out_name]))
            outputs.append(info)
    graph = helper.make_graph(
        g.nodes,
        "embedserve_bert" if fam.name == "bert" else f"embedserve_{fam.name}",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
            # rows [0, split) are padded to width_a in attention; the engine sorts rows by length
            helper.make_tensor_value_info("split", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("width_a", TensorProto.INT64, [1]),
            *(helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
              for name in ("key_mask", "token_type_ids") if name in needs),
        ],
        outputs,
        initializer=g.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)],
        producer_name="embedserve",
    )
    model.ir_version = 8
    return model


def save_graph(model: onnx.ModelProto, path: Path) -> None:
    """Write atomically (temp file then rename), so a crash never leaves a half-written graph.

    The temp name is per process: engines starting at once in several processes (Ray Data's
    actors, Serve's replicas) each build the graph and the last rename wins, never a missing file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f"{path.suffix}.tmp-{os.getpid()}")
    onnx.save_model(model, str(tmp))
    tmp.replace(path)
