"""Heads: what the graph outputs from the encoder's last hidden states.

A head takes :class:`HeadInput` (the packed last hidden states, the batch layout, the weights)
and returns its outputs as ``(name, value, ValueInfo)``:

* ``pooled``: [batch, hidden], un-normalised, over the attention mask, the way
  sentence-transformers pools;
* ``tokens``: [tokens, hidden], the unpooled last hidden state of every real token, packed in
  row-major order of the (length-sorted) batch (``encode(..., output="token")``);
* ``colbert``: ``tokens`` [tokens, dim] through a ColBERT checkpoint's linear projection
  (``linear.weight``, no bias), un-normalised;
* ``scores``: [batch, labels], a ``*ForSequenceClassification`` cross-encoder's logits: BERT's
  pooler (dense + tanh on [CLS]) then the classification linear.

``colbert`` needs the graph's ``key_mask`` input and ``scores`` its ``token_type_ids`` input
(:data:`NEEDS`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from onnx import TensorProto, ValueInfoProto, helper

from embedserve.errors import StoreError
from embedserve.store.family import Family, Shape
from embedserve.store.graph.builder import GraphBuilder
from embedserve.store.graph.layout import Layout
from embedserve.store.graph.weights import Weights


@dataclass
class HeadInput:
    g: GraphBuilder
    hidden: str  # packed [tokens, hidden] after the last layer
    whole: Layout  # the whole batch's layout (pack / unpack, positions)
    family: Family
    shape: Shape
    weights: Weights
    pooling: str  # from the folder's own 1_Pooling/config.json

    @functools.cached_property
    def padded(self) -> str:
        """The last hidden states as ``[batch, seq, hidden]``, zeros at the padding."""
        return self.whole.unpack(self.hidden, self.shape.hidden)


HeadOutput = tuple[str, str, ValueInfoProto]  # graph output name, value, its type
Head = Callable[[HeadInput], list[HeadOutput]]


def pooling_head(h: HeadInput) -> list[HeadOutput]:
    pooled = pool(h.g, h.padded, h.pooling)
    info = helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", h.shape.hidden])
    return [("pooled", pooled, info)]


def pool(g: GraphBuilder, x: str, pooling: str) -> str:
    """``[batch, seq, hidden]`` -> ``[batch, hidden]`` over ``attention_mask``."""
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


def token_head(h: HeadInput) -> list[HeadOutput]:
    info = helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["tokens", h.shape.hidden])
    return [("tokens", h.hidden, info)]


def colbert_head(h: HeadInput) -> list[HeadOutput]:
    weight = h.weights.get("linear.weight")  # torch Linear: [dim, hidden]
    if weight.ndim != 2 or weight.shape[1] != h.shape.hidden:
        raise StoreError(f"linear.weight has shape {tuple(weight.shape)}, "
                         f"expected (dim, {h.shape.hidden})")
    projected = h.g.op("MatMul", [h.hidden, h.g.const("colbert_linear", weight.T)])
    info = helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["tokens", weight.shape[0]])
    return [("tokens", projected, info)]


def scores_head(h: HeadInput) -> list[HeadOutput]:
    g, w, hidden = h.g, h.weights, h.shape.hidden
    cls = g.op("Gather", [h.padded, g.const("cls_index", np.array(0, np.int64))], axis=1)
    dense = g.op("MatMul", [cls, g.const("pooler_w", w.get("pooler.dense.weight").T)])
    pooled = g.op("Tanh", [g.op("Add", [dense, g.const("pooler_b", w.get("pooler.dense.bias"))])])
    weight = w.get("classifier.weight")
    if weight.ndim != 2 or weight.shape[1] != hidden:
        raise StoreError(f"classifier.weight has shape {tuple(weight.shape)}, expected (labels, {hidden})")
    logits = g.op("Add", [g.op("MatMul", [pooled, g.const("classifier_w", weight.T)]),
                          g.const("classifier_b", w.get("classifier.bias"))])
    info = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", weight.shape[0]])
    return [("scores", logits, info)]


HEADS: dict[str, Head] = {
    "pooled": pooling_head,
    "tokens": token_head,
    "colbert": colbert_head,
    "scores": scores_head,
}
# extra graph inputs a head needs: "key_mask" (tokens that exist but are not attended to: ColBERT's
# [MASK] query expansion), "token_type_ids" (a pair's segment B)
NEEDS: dict[str, tuple[str, ...]] = {"colbert": ("key_mask",), "scores": ("token_type_ids",)}
