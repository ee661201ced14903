"""Build an ONNX graph for a BERT-family sentence-transformers model straight from its weights.

No torch: the weights come from ``model.safetensors`` (numpy), the shape from ``config.json``, and the
pooling from the folder's own ``modules.json`` / ``1_Pooling/config.json``. The graph is written
directly in onnxruntime's fused form (the way onnxruntime-genai's model builder does it):

* ``Gather`` word + position (+ token-type 0, folded into the position table) -> ``LayerNormalization``
* per layer: one ``MatMul`` for Q, K and V together on the real tokens only ->
  ``com.microsoft.MultiHeadAttention`` (QKV bias, 0/1 key padding mask) on each of two padded
  length groups -> ``MatMul`` -> ``Add`` bias + residual -> ``LayerNormalization`` -> ``MatMul``
  -> ``BiasGelu`` -> ``MatMul`` -> ``Add`` bias + residual -> ``LayerNormalization``
* ``quantization="int8"``: every weight MatMul gets per-output-channel symmetric int8 weights with
  activations quantized per call (``DynamicQuantizeMatMul``) and ``FastGelu``; attention
  products, softmax, LayerNorm and embeddings stay fp32.
* pooling inside the graph (mean / cls / max / mean_sqrt_len over the attention mask), so one
  ``session.run`` gives pooled, un-normalised vectors.

Inputs: ``input_ids`` int64 [batch, seq], ``attention_mask`` int64 [batch, seq], ``split`` and
``width_a`` int64 [1] (rows sorted by length; the first ``split`` rows need at most ``width_a``
columns: attention pads them only that far). Output: ``pooled`` float32 [batch, hidden]. Nothing
assumes a layer count or a width: all of it is read from config.json.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from embedserve.errors import StoreError

MS = "com.microsoft"
GRAPH_FORMAT = 5  # bump when the graph layout changes, so cached graphs are rebuilt


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

    def fresh(self, prefix: str) -> str:
        """A name no other node or constant has."""
        self._n += 1
        return f"{prefix}_{self._n}"

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


class _Layout:
    """A padded ``[rows, seq]`` layout given by a 0/1 mask, and the moves between it and the packed
    ``[tokens, width]`` form (tokens in row-major order, so consecutive row ranges stay contiguous)."""

    def __init__(self, g: _Graph, mask: str, hidden: int) -> None:
        self.g = g
        self.hidden = hidden
        self._mask = mask
        self.mask_shape = g.op("Shape", [mask])
        flat = g.op("Reshape", [mask, g.const(g.fresh("flat"), np.array([-1], np.int64))])
        self.cells = g.op("Shape", [flat])  # [rows * seq]
        real = g.op("NonZero", [flat])
        self.rows = g.op("Transpose", [real], perm=[1, 0])  # [tokens, 1] for ScatterND
        self.index = g.op("Reshape", [real, g.const(g.fresh("flat"), np.array([-1], np.int64))])
        self.tokens = g.op("Shape", [self.index])
        self._zeros: dict[int, tuple[str, str]] = {}

    @functools.cached_property
    def mask(self) -> str:
        """The mask as int32, the key padding mask ``MultiHeadAttention`` takes."""
        return self.g.op("Cast", [self._mask], to=TensorProto.INT32)

    def unpack(self, packed: str, width: int) -> str:
        """``[tokens, width]`` -> ``[rows, seq, width]``, zeros at the padding."""
        g = self.g
        if width not in self._zeros:
            dim = g.const(g.fresh("width"), np.array([width], np.int64))
            zeros = g.op("ConstantOfShape", [g.op("Concat", [self.cells, dim], axis=0)],
                         value=helper.make_tensor(g.fresh("zero"), TensorProto.FLOAT, [1], [0.0]))
            self._zeros[width] = (zeros, g.op("Concat", [self.mask_shape, dim], axis=0))
        zeros, full_shape = self._zeros[width]
        return g.op("Reshape", [g.op("ScatterND", [zeros, self.rows, packed]), full_shape])

    def pack(self, full: str) -> str:
        """``[rows, seq, hidden]`` -> ``[tokens, hidden]``: the real tokens only."""
        g = self.g
        flat = g.op("Reshape", [full, g.const(g.fresh("rows"), np.array([-1, self.hidden], np.int64))])
        return g.op("Gather", [flat, self.index], axis=0)


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
    # Padding-free dense layers: every weight MatMul (the QKV projection included) runs on the
    # real tokens only, packed into [tokens, width]. Only the attention core sees a padded
    # [rows, seq, width] layout, and it sees two: the batch's rows are length-sorted, the first
    # ``split`` of them padded only to ``width_a``, the rest to the batch's longest (the engine
    # picks the split that pads least, see engine.onnx.attention_split). On random batches of 32
    # short texts this runs as fast as length-sorted ones (BENCHMARKS.md), where one padded
    # layout cost ~10 %, and ORT's fused Attention (QKV projected on every padding slot) more.
    whole = _Layout(g, "attention_mask", shape.hidden)
    big = g.const("to_end", np.array([2**62], np.int64))
    short_rows = g.op(
        "Slice",
        ["attention_mask", g.const("origin", np.array([0, 0], np.int64)),
         g.op("Concat", ["split", "width_a"], axis=0), g.const("axes_01", np.array([0, 1], np.int64))],
    )
    long_rows = g.op("Slice", ["attention_mask", "split", big, g.const("axis_0", np.array([0], np.int64))])
    groups = (_Layout(g, short_rows, shape.hidden), _Layout(g, long_rows, shape.hidden))
    group_tokens = g.op("Concat", [grp.tokens for grp in groups], axis=0)
    thirds = g.const("qkv_thirds", np.array([shape.hidden] * 3, np.int64))

    def attention(qkv: str, bias: str) -> str:
        """Packed ``[tokens, 3 x hidden]`` Q|K|V -> packed ``[tokens, hidden]``: the tokens split
        by group, ``MultiHeadAttention`` on each group's padded layout, packed again."""
        parts = g.op_multi("Split", [qkv, group_tokens], 2, axis=0)
        out = []
        for grp, part in zip(groups, parts):
            padded = grp.unpack(part, 3 * shape.hidden)
            query, key, value = g.op_multi("Split", [padded, thirds], 3, axis=2)
            out.append(grp.pack(g.op("MultiHeadAttention", [query, key, value, bias, grp.mask],
                                     domain=MS, num_heads=shape.heads)))
        return g.op("Concat", out, axis=0)

    x = whole.pack(x)

    for i in range(shape.layers):
        p = f"encoder.layer.{i}."
        qkv_w = np.concatenate(
            [get(p + f"attention.self.{n}.weight").T for n in ("query", "key", "value")], axis=1
        )
        qkv_b = np.concatenate([get(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")])
        # the projection on the real tokens; int8: DynamicQuantizeMatMul. (ORT's QAttention,
        # which projects inside, divides by zero on an empty group; with groups it was no faster
        # on random batches of 32, 902 vs 915 texts/s, and 5 % faster on sorted ones.)
        qkv = g.matmul(x, qkv_w, f"l{i}_qkv_w", int8)
        attn = attention(qkv, g.const(f"l{i}_qkv_b", qkv_b))
        attn = g.matmul(attn, get(p + "attention.output.dense.weight").T, f"l{i}_ao_w", int8)
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

    pooled = _pool(g, whole.unpack(x, shape.hidden), pooling)
    g.nodes.append(helper.make_node("Identity", [pooled], ["pooled"]))
    graph = helper.make_graph(
        g.nodes,
        "embedserve_bert",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
            # rows [0, split) are padded to width_a in attention; the engine sorts rows by length
            helper.make_tensor_value_info("split", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("width_a", TensorProto.INT64, [1]),
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
