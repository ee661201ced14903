"""Positions that enter inside attention: MPNet's relative-position bias and NomicBERT's rotary.

* ``relative_bias``: T5-style buckets of ``key - query`` (bidirectional, log-spaced past
  ``buckets // 4``, capped at ``max_distance``), one learnt value per bucket and head, added to
  every layer's attention scores. The bucket of each offset is computed here once (numpy, in
  float32 the way transformers' MPNet does it in torch) and folded with the weights into a
  ``[2 x window - 1, heads]`` table; the graph gathers it for each group's own width.
* ``rotary``: rotate-half (GPT-NeoX, non-interleaved) rotation of Q and K by each token's position
  in its row, ``inv_freq = base ** (-2i / head_dim)``; cos and sin tables for the whole window.
"""

from __future__ import annotations

import math

import numpy as np

from embedserve.store.family import Shape
from embedserve.store.graph.builder import GraphBuilder
from embedserve.store.graph.layout import Layout


def relative_buckets(offsets: np.ndarray, buckets: int = 32, max_distance: int = 128) -> np.ndarray:
    """Bucket of each ``key - query`` offset (transformers' ``MPNetEncoder.relative_position_bucket``)."""
    n = -offsets.astype(np.int64)
    half = buckets // 2
    ret = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    max_exact = half // 2
    with np.errstate(divide="ignore"):
        scaled = (np.log(n.astype(np.float32) / np.float32(max_exact))
                  / np.float32(math.log(max_distance / max_exact)) * np.float32(half - max_exact))
    large = max_exact + np.where(n < max_exact, 0, scaled).astype(np.int64)
    large = np.minimum(large, half - 1)
    return ret + np.where(n < max_exact, n, large)


class RelativeBias:
    """The ``[1, heads, seq, seq]`` attention bias of each layout, built once and shared by every layer."""

    def __init__(self, g: GraphBuilder, shape: Shape, weight: np.ndarray) -> None:
        self.g = g
        self.window = shape.max_positions
        offsets = np.arange(-(self.window - 1), self.window)
        buckets = relative_buckets(offsets, shape.buckets, shape.max_distance)
        self.table = g.const("relative_bias_table", weight[buckets].astype(np.float32))
        self._cache: dict[int, str] = {}

    def for_layout(self, layout: Layout) -> str:
        key = id(layout)
        if key not in self._cache:
            g = self.g
            cols = g.op("Range", [g.const(g.fresh("zero"), np.array(0, np.int64)),
                                  g.op("Squeeze", [layout.width, g.ints([0])]),
                                  g.const(g.fresh("one"), np.array(1, np.int64))])
            rel = g.op("Sub", [g.op("Unsqueeze", [cols, g.ints([0])]),
                               g.op("Unsqueeze", [cols, g.ints([1])])])  # [q, k]: k - q
            rel = g.op("Add", [rel, g.const(g.fresh("shift"), np.array(self.window - 1, np.int64))])
            bias = g.op("Transpose", [g.op("Gather", [self.table, rel], axis=0)], perm=[2, 0, 1])
            self._cache[key] = g.op("Unsqueeze", [bias, g.ints([0])])
        return self._cache[key]


class Rotary:
    """Rotates the Q and K thirds of a packed ``[tokens, 3 x hidden]`` projection."""

    def __init__(self, g: GraphBuilder, shape: Shape, positions: str) -> None:
        self.g = g
        self.shape = shape
        half = shape.rotary_dim // 2
        inv_freq = 1.0 / (shape.rotary_base ** (np.arange(0, shape.rotary_dim, 2, dtype=np.float64)
                                                / shape.rotary_dim))
        angles = np.outer(np.arange(shape.max_positions, dtype=np.float64), inv_freq)
        five_d = g.ints([-1, 1, 1, 1, half])
        self.cos = g.op("Reshape", [g.op("Gather", [g.const("rotary_cos", np.cos(angles).astype(np.float32)),
                                                    positions], axis=0), five_d])
        self.sin = g.op("Reshape", [g.op("Gather", [g.const("rotary_sin", np.sin(angles).astype(np.float32)),
                                                    positions], axis=0), five_d])

    def __call__(self, qkv: str) -> str:
        g, s = self.g, self.shape
        qk, v = g.op_multi("Split", [qkv, g.ints([2 * s.hidden, s.hidden])], 2, axis=1)
        x = g.op("Reshape", [qk, g.ints([-1, 2, s.heads, 2, s.rotary_dim // 2])])
        x1, x2 = g.op_multi("Split", [x], 2, axis=3)
        first = g.op("Sub", [g.op("Mul", [x1, self.cos]), g.op("Mul", [x2, self.sin])])
        second = g.op("Add", [g.op("Mul", [x2, self.cos]), g.op("Mul", [x1, self.sin])])
        rotated = g.op("Reshape", [g.op("Concat", [first, second], axis=3), g.ints([-1, 2 * s.hidden])])
        return g.op("Concat", [rotated, v], axis=1)
