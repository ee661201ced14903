"""Packed tokens and padded layouts: the dense layers see only real tokens, attention sees rows.

Every weight MatMul runs on the real tokens only, packed into ``[tokens, width]``. Only the
attention core sees a padded ``[rows, seq, width]`` layout, and it sees two: the batch's rows are
length-sorted, the first ``split`` of them padded only to ``width_a``, the rest to the batch's
longest (the engine picks the split that pads least, see ``engine.onnx.attention_split``). On
random batches of 32 short texts this runs as fast as length-sorted ones (BENCHMARKS.md), where
one padded layout cost ~10 %, and ORT's fused Attention (QKV projected on every padding slot) more.
"""

from __future__ import annotations

import functools

import numpy as np
from onnx import TensorProto, helper

from embedserve.store.graph.builder import GraphBuilder


class Layout:
    """A padded ``[rows, seq]`` layout given by a 0/1 mask, and the moves between it and the packed
    ``[tokens, width]`` form (tokens in row-major order, so consecutive row ranges stay contiguous)."""

    def __init__(self, g: GraphBuilder, mask: str, hidden: int, keys: str = "") -> None:
        self.g = g
        self.hidden = hidden
        self._mask = mask
        self._keys = keys or mask  # the tokens attention looks at (default: every real one)
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
        return self.g.op("Cast", [self._keys], to=TensorProto.INT32)

    @functools.cached_property
    def width(self) -> str:
        """The layout's padded width ``seq``, int64 [1]."""
        return self.g.op("Shape", [self._mask], start=1, end=2)

    @functools.cached_property
    def positions(self) -> str:
        """Each packed token's position in its row (0-based), int64 [tokens]."""
        g = self.g
        cols = g.op("Range", [g.const(g.fresh("zero"), np.array(0, np.int64)),
                              g.op("Squeeze", [self.width, g.ints([0])]),
                              g.const(g.fresh("one"), np.array(1, np.int64))])
        grid = g.op("Expand", [cols, self.mask_shape])  # [rows, seq]: column numbers
        return g.op("Gather", [g.op("Reshape", [grid, g.ints([-1])]), self.index], axis=0)

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


class Groups:
    """The batch's two attention groups (short rows padded to ``width_a``, the rest to the longest)
    beside the whole batch's layout."""

    def __init__(self, g: GraphBuilder, hidden: int, keys: str = "") -> None:
        """``keys``: an input naming which tokens attention may look at, when not all of them."""
        self.whole = Layout(g, "attention_mask", hidden)
        big = g.const("to_end", np.array([2**62], np.int64))
        short_end = g.op("Concat", ["split", "width_a"], axis=0)
        origin = g.const("origin", np.array([0, 0], np.int64))
        axes_01 = g.const("axes_01", np.array([0, 1], np.int64))
        axis_0 = g.const("axis_0", np.array([0], np.int64))

        def rows(mask: str) -> tuple[str, str]:
            return (g.op("Slice", [mask, origin, short_end, axes_01]),
                    g.op("Slice", [mask, "split", big, axis_0]))

        short_keys, long_keys = rows(keys) if keys else ("", "")
        short_rows, long_rows = rows("attention_mask")
        self.parts = (Layout(g, short_rows, hidden, short_keys), Layout(g, long_rows, hidden, long_keys))
        self.tokens = g.op("Concat", [grp.tokens for grp in self.parts], axis=0)
