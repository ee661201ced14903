"""Heads: what the graph outputs from the encoder's last hidden states.

A head takes :class:`HeadInput` (the packed last hidden states, the batch layout, the weights)
and returns its outputs as ``(name, value, ValueInfo)``. Today's head is pooling (``pooled``
[batch, hidden], un-normalised, over the attention mask, the way sentence-transformers pools);
token outputs or a classifier join as further heads in :data:`HEADS`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from onnx import TensorProto, ValueInfoProto, helper

from embedserve.errors import StoreError
from embedserve.store.graph.builder import GraphBuilder
from embedserve.store.graph.family import Family, Shape
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


HEADS: dict[str, Head] = {"pooled": pooling_head}
