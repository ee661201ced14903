"""Build an ONNX graph for a BERT-family sentence-transformers model straight from its weights.

No torch: the weights come from ``model.safetensors`` (numpy), the shape from ``config.json``, and the
pooling from the folder's own ``modules.json`` / ``1_Pooling/config.json``. The graph is written
directly in onnxruntime's fused form (the way onnxruntime-genai's model builder does it):

* ``Gather`` word + position (+ token-type 0, folded into the position table) -> ``LayerNormalization``
* per layer: one ``MatMul`` for Q, K and V together on the real tokens only ->
  ``com.microsoft.MultiHeadAttention`` (QKV bias, 0/1 key padding mask) -> ``MatMul`` ->
  ``Add`` bias + residual -> ``LayerNormalization`` -> ``MatMul`` -> ``BiasGelu`` -> ``MatMul`` ->
  ``Add`` bias + residual -> ``LayerNormalization``
* ``quantization="int8"``: every weight MatMul gets per-output-channel symmetric int8 weights with
  activations quantized per call (``QAttention``, ``DynamicQuantizeMatMul``) and ``FastGelu``;
  attention products, softmax, LayerNorm and embeddings stay fp32.
* pooling inside the graph (mean / cls / max / mean_sqrt_len over the attention mask), so one
  ``session.run`` gives pooled, un-normalised vectors.

Inputs: ``input_ids`` int64 [batch, seq], ``attention_mask`` int64 [batch, seq]. Output: ``pooled``
float32 [batch, hidden]. Nothing assumes a layer count or a width: all of it is read from config.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from embedserve.errors import StoreError

MS = "com.microsoft"
GRAPH_FORMAT = 4  # bump when the graph layout changes, so cached graphs are rebuilt


@dataclass(frozen=True)
class BertShape:
    layers: int
    hidden: int
    heads: int
    intermediate: int
    eps: float
    max_positions: int
    activation: str

    @classmethod
    def from_config(cls, config: dict) -> BertShape:
        model_type = config.get("model_type", "")
        archs = config.get("architectures") or []
        if model_type not in ("bert", "") and not any("Bert" in a for a in archs):
            raise StoreError(f"unsupported architecture {model_type!r}: only BERT-family encoders")
        try:
            shape = cls(
                layers=int(config["num_hidden_layers"]),
                hidden=int(config["hidden_size"]),
                heads=int(config["num_attention_heads"]),
                intermediate=int(config["intermediate_size"]),
                eps=float(config.get("layer_norm_eps", 1e-12)),
                max_positions=int(config.get("max_position_embeddings", 512)),
                activation=str(config.get("hidden_act", "gelu")),
            )
        except KeyError as missing:
            raise StoreError(f"config.json lacks {missing}") from None
        if shape.hidden % shape.heads:
            raise StoreError("config.json: hidden_size is not a multiple of num_attention_heads")
        if shape.activation not in ("gelu", "gelu_python"):
            raise StoreError(f"unsupported activation {shape.activation!r} (only exact gelu)")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise StoreError("only absolute position embeddings are supported")
        return shape


def load_weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    path = folder / "model.safetensors"
    if not path.exists():
        raise StoreError(f"{folder} has no model.safetensors")
    raw = load_file(str(path))
    out: dict[str, np.ndarray] = {}
    for key, value in raw.items():
        for prefix in ("bert.", "model.", "0.auto_model."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.require(value, requirements="C"), name))
        return name

    def op(self, op: str, inputs: list[str], domain: str = "", **attrs: object) -> str:
        self._n += 1
        out = f"{op.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op, inputs, [out], domain=domain or None, **attrs))
        return out

    def op_multi(self, op: str, inputs: list[str], n_out: int, domain: str = "", **attrs: object) -> list[str]:
        self._n += 1
        outs = [f"{op.lower()}_{self._n}_{k}" for k in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, domain=domain or None, **attrs))
        return outs

    def residual_norm(self, y: str, skip: str, bias: np.ndarray, weight: np.ndarray,
                      beta: np.ndarray, name: str, eps: float) -> str:
        """``LayerNorm(y + bias + skip)`` as plain ``Add``s and ``LayerNormalization``: measured ~3x
        faster than ORT 1.32's ``SkipLayerNormalization`` contrib kernel on CPU (18 vs 52 ms per
        batch of 256 short texts), and the same numbers."""
        total = self.op("Add", [self.op("Add", [y, self.const(name + "_bias", bias)]), skip])
        return self.op(
            "LayerNormalization",
            [total, self.const(name + "_w", weight), self.const(name + "_b", beta)],
            axis=-1,
            epsilon=eps,
        )

    def matmul(self, x: str, weight: np.ndarray, name: str, int8: bool) -> str:
        """``x @ weight`` (weight is [in, out]); int8: per-output-channel symmetric int8 weights,
        activations quantized on the fly (``DynamicQuantizeMatMul``)."""
        if not int8:
            return self.op("MatMul", [x, self.const(name, weight)])
        q, scale = quantize_per_channel(weight)
        return self.op(
            "DynamicQuantizeMatMul",
            [x, self.const(name + "_q", q), self.const(name + "_scale", scale)],
            domain=MS,
        )


def quantize_per_channel(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output column: ``weight ~= q * scale``, |q| <= 127."""
    scale = np.abs(weight).max(axis=0) / 127.0
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    q = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
    return q, scale


def build_bert_graph(folder: Path, quantization: str = "fp32") -> onnx.ModelProto:
    """Build the fused graph for the sentence-transformers folder ``folder``.

    ``quantization="int8"``: the weight MatMuls (not the attention products, LayerNorms, softmax or
    embeddings) use per-channel int8 weights with dynamically quantized activations.
    """
    int8 = quantization == "int8"
    if quantization not in ("fp32", "int8"):
        raise StoreError(f"unknown quantization {quantization!r}")
    from embedserve.store.folder import inspect_folder

    meta = inspect_folder(folder)  # the folder's own metadata decides pooling
    shape = BertShape.from_config(meta.config)
    pooling = meta.pooling
    w = load_weights(folder)

    def get(name: str) -> np.ndarray:
        try:
            return w[name].astype(np.float32)
        except KeyError:
            raise StoreError(f"model.safetensors lacks tensor {name!r}") from None

    g = _Graph()
    # Embeddings: word + (position + token_type[0]); token_type_ids are always 0 for one segment.
    word = g.const("word_embeddings", get("embeddings.word_embeddings.weight"))
    pos_table = get("embeddings.position_embeddings.weight")
    if "embeddings.token_type_embeddings.weight" in w:
        pos_table = pos_table + get("embeddings.token_type_embeddings.weight")[0][None, :]
    pos = g.const("position_embeddings", pos_table)
    seq_len = g.op("Shape", ["input_ids"], start=1, end=2)
    zero = g.const("zero_i64", np.array([0], dtype=np.int64))
    pos_slice = g.op("Slice", [pos, zero, seq_len, zero])
    x = g.op("Add", [g.op("Gather", [word, "input_ids"], axis=0), pos_slice])
    x = g.op(
        "LayerNormalization",
        [x, g.const("emb_ln_w", get("embeddings.LayerNorm.weight")),
         g.const("emb_ln_b", get("embeddings.LayerNorm.bias"))],
        axis=-1,
        epsilon=shape.eps,
    )
    mask_i32 = g.op("Cast", ["attention_mask"], to=TensorProto.INT32)
    # Padding-free dense layers: every weight MatMul (the QKV projection included) runs on the
    # real tokens only, packed into [tokens, width]; only the attention core sees the padded
    # [batch, seq, width] layout (zeros at the padding, which the mask hides). On an unsorted
    # batch of 32 short texts this is ~10 % faster than ORT's fused Attention, which projects QKV
    # on the padded tokens too; on length-sorted batches it is the same (BENCHMARKS.md).
    flat_2d = g.const("flat_2d", np.array([-1, shape.hidden], np.int64))
    mask_flat = g.op("Reshape", ["attention_mask", g.const("flat_1d", np.array([-1], np.int64))])
    real = g.op("NonZero", [mask_flat])
    real_rows = g.op("Transpose", [real], perm=[1, 0])  # [tokens, 1] for ScatterND
    real_idx = g.op("Reshape", [real, g.const("flat_1d_b", np.array([-1], np.int64))])
    padded: dict[int, tuple[str, str]] = {}  # width -> (zeros, shape [batch, seq, width])

    def unpack(packed: str, width: int = shape.hidden) -> str:
        if width not in padded:
            dim = g.const(f"width_{width}", np.array([width], np.int64))
            zeros = g.op(
                "ConstantOfShape",
                [g.op("Concat", [g.op("Shape", [mask_flat]), dim], axis=0)],
                value=helper.make_tensor(f"zero_{width}", TensorProto.FLOAT, [1], [0.0]),
            )
            padded[width] = (zeros, g.op("Concat", [g.op("Shape", ["input_ids"]), dim], axis=0))
        zeros, full_shape = padded[width]
        return g.op("Reshape", [g.op("ScatterND", [zeros, real_rows, packed]), full_shape])

    def pack(full: str) -> str:
        return g.op("Gather", [g.op("Reshape", [full, flat_2d]), real_idx], axis=0)

    x = pack(x)

    for i in range(shape.layers):
        p = f"encoder.layer.{i}."
        qkv_w = np.concatenate(
            [get(p + f"attention.self.{n}.weight").T for n in ("query", "key", "value")], axis=1
        )
        qkv_b = np.concatenate([get(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")])
        if int8:
            # QAttention on the padded tokens stays: packed DynamicQuantizeMatMul + the fp32
            # MultiHeadAttention below ran ~8-18 % slower for int8 in an A/B (the same vectors:
            # padding zeros do not change the per-tensor activation scale)
            q, scale = quantize_per_channel(qkv_w)
            xq, xs, xz = g.op_multi("DynamicQuantizeLinear", [unpack(x)], 3)
            attn = g.op(
                "QAttention",
                [xq, g.const(f"l{i}_qkv_q", q), g.const(f"l{i}_qkv_b", qkv_b), xs,
                 g.const(f"l{i}_qkv_scale", scale), mask_i32, xz,
                 g.const(f"l{i}_qkv_zp", np.zeros(scale.shape, np.int8))],
                domain=MS,
                num_heads=shape.heads,
            )
        else:
            qkv = unpack(g.op("MatMul", [x, g.const(f"l{i}_qkv_w", qkv_w)]), 3 * shape.hidden)
            split = g.const(f"l{i}_qkv_split", np.array([shape.hidden] * 3, np.int64))
            query, key, value = g.op_multi("Split", [qkv, split], 3, axis=2)
            attn = g.op(
                "MultiHeadAttention",
                [query, key, value, g.const(f"l{i}_qkv_b", qkv_b), mask_i32],
                domain=MS,
                num_heads=shape.heads,
            )
        attn = g.matmul(pack(attn), get(p + "attention.output.dense.weight").T, f"l{i}_ao_w", int8)
        x = g.residual_norm(attn, x, get(p + "attention.output.dense.bias"),
                            get(p + "attention.output.LayerNorm.weight"),
                            get(p + "attention.output.LayerNorm.bias"), f"l{i}_ln1", shape.eps)
        h = g.matmul(x, get(p + "intermediate.dense.weight").T, f"l{i}_in_w", int8)
        # int8 trades exactness for speed anyway: tanh-GELU (FastGelu) is ~6% faster and moves STS-B
        # by < 0.0001; the exact tag keeps erf-GELU (BiasGelu).
        gelu = "FastGelu" if int8 else "BiasGelu"
        h = g.op(gelu, [h, g.const(f"l{i}_in_b", get(p + "intermediate.dense.bias"))], domain=MS)
        h = g.matmul(h, get(p + "output.dense.weight").T, f"l{i}_out_w", int8)
        x = g.residual_norm(h, x, get(p + "output.dense.bias"), get(p + "output.LayerNorm.weight"),
                            get(p + "output.LayerNorm.bias"), f"l{i}_ln2", shape.eps)

    pooled = _pool(g, unpack(x), pooling)
    g.nodes.append(helper.make_node("Identity", [pooled], ["pooled"]))
    graph = helper.make_graph(
        g.nodes,
        "embedserve_bert",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", shape.hidden])],
        initializer=g.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)],
        producer_name="embedserve",
    )
    model.ir_version = 8
    return model


def _pool(g: _Graph, x: str, pooling: str) -> str:
    if pooling == "cls":
        first = g.op("Gather", [x, g.const("idx0", np.array(0, dtype=np.int64))], axis=1)
        return first
    mask_f = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    mask3 = g.op("Unsqueeze", [mask_f, g.const("axis_m1", np.array([-1], dtype=np.int64))])
    axis1 = g.const("axis_1", np.array([1], dtype=np.int64))
    if pooling == "max":
        # padding positions get -1e9 before the max, as sentence-transformers does
        neg = g.op("Mul", [g.op("Sub", [g.const("one_f", np.array(1.0, np.float32)), mask3]),
                           g.const("neg_big", np.array(-1e9, np.float32))])
        return g.op("ReduceMax", [g.op("Add", [g.op("Mul", [x, mask3]), neg])], axes=[1], keepdims=0)
    summed = g.op("ReduceSum", [g.op("Mul", [x, mask3]), axis1], keepdims=0)
    counts = g.op("ReduceSum", [mask3, axis1], keepdims=0)
    counts = g.op("Max", [counts, g.const("min_count", np.array(1e-9, np.float32))])
    if pooling == "mean":
        return g.op("Div", [summed, counts])
    if pooling == "mean_sqrt_len":
        return g.op("Div", [summed, g.op("Sqrt", [counts])])
    raise StoreError(f"unsupported pooling {pooling!r}")


def save_graph(model: onnx.ModelProto, path: Path) -> None:
    """Write atomically (temp file then rename), so a crash never leaves a half-written graph."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    onnx.save_model(model, str(tmp))
    tmp.replace(path)
