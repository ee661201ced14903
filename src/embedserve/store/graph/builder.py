"""The small graph-writing toolkit every family builder uses: fresh names, constants, nodes, and
the two weight-bearing idioms (a MatMul that may be int8, a residual Add + LayerNorm)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import onnx
from onnx import helper, numpy_helper

MS = "com.microsoft"


def quantize_per_channel(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output column: ``weight ~= q * scale``, |q| <= 127."""
    scale = np.abs(weight).max(axis=0) / 127.0
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    q = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
    return q, scale


class Range(NamedTuple):
    """A quantized MatMul input as calibration saw it: min and max over every token, and the
    median over tokens of a token row's own max ``|x|``."""

    lo: float
    hi: float
    row: float

    def levels(self) -> float:
        """How many of the 255 steps of a static scale span a typical row's ``[-max|x|, max|x|]``:
        few when some tokens' values (outlier tokens) are far larger than the rest's."""
        return 2 * 255 * self.row / max(self.hi - min(self.lo, 0.0), 1e-30)


# Below this, a MatMul's input is quantized per row at run time instead (see Range.levels()).
# all-MiniLM-L6-v2: every MatMul >= 47, so all static; all-mpnet-base-v2 (outlier tokens of up to
# 100 in its FFNs): 10 of 48 below 40. mpnet's STS-B dev vectors, mean cosine to the exact graph:
# 0.9866 with 24, 0.9913 with 40, 0.9964 per row everywhere (2026-12-02).
MIN_LEVELS = 40


def activation_quant(lo: float, hi: float) -> tuple[np.float32, np.uint8]:
    """uint8 scale and zero point covering ``[min(lo, 0), max(hi, 0)]`` (0 exactly representable):
    ``x ~= (q - zp) * scale``, values outside saturate."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zp = int(np.clip(np.rint(-lo / scale), 0, 255))
    return np.float32(scale), np.uint8(zp)


class GraphBuilder:
    def __init__(self, *, cuda: bool = False,
                 ranges: Mapping[str, Range] | None = None) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.cuda = cuda  # int8 with the ops that have CUDA kernels (see int8_matmul)
        self.ranges = ranges or {}  # int8: each weight MatMul's calibrated input range
        self._n = 0
        self._shared_names: set[str] = set()

    def fresh(self, prefix: str) -> str:
        """A name no other node or constant has."""
        self._n += 1
        return f"{prefix}_{self._n}"

    def const(self, name: str, value: np.ndarray | np.generic) -> str:
        self.inits.append(numpy_helper.from_array(np.require(value, requirements="C"), name))
        return name

    def ints(self, values: list[int], prefix: str = "i64") -> str:
        """An int64 vector constant under a fresh name (shapes, axes, slice bounds)."""
        return self.const(self.fresh(prefix), np.array(values, np.int64))

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

    def layer_norm(self, x: str, weight: np.ndarray, beta: np.ndarray, name: str, eps: float) -> str:
        return self.op(
            "LayerNormalization",
            [x, self.const(name + "_w", weight), self.const(name + "_b", beta)],
            axis=-1,
            epsilon=eps,
        )

    def residual_norm(self, y: str, skip: str, bias: np.ndarray | None, weight: np.ndarray,
                      beta: np.ndarray, name: str, eps: float) -> str:
        """``LayerNorm(y + bias + skip)`` as plain ``Add``s and ``LayerNormalization``: measured ~3x
        faster than ORT 1.32's ``SkipLayerNormalization`` contrib kernel on CPU (18 vs 52 ms per
        batch of 256 short texts), and the same numbers. ``bias=None``: a layer without biases."""
        if bias is not None:
            y = self.op("Add", [y, self.const(name + "_bias", bias)])
        total = self.op("Add", [y, skip])
        return self.layer_norm(total, weight, beta, name, eps)

    def matmul(self, x: str, weight: np.ndarray, name: str, int8: bool) -> str:
        """``x @ weight`` (weight is [in, out]); int8: :meth:`int8_matmul`."""
        if not int8:
            return self.op("MatMul", [x, self.const(name, weight)])
        return self.int8_matmul(x, weight, name)

    def int8_matmul(self, x: str, weight: np.ndarray, name: str) -> str:
        """``x @ weight`` with per-output-channel symmetric int8 weights and int8 activations
        quantized either way that keeps a text's vector independent of its batch: every row with
        the same constants (**static**, from the range calibration measured, ``self.ranges[name]``,
        :mod:`.calibrate`), or each row with its own scale (**per row**, computed per call) where
        calibration saw outlier tokens that would leave a static scale too few steps for the
        others (``Range.levels() < MIN_LEVELS``). The integer product is exact either way (on x86
        CPUs without VNNI, with ``session.x64quantprecision``: see ``engine.onnx.session_options``).
        (A
        per-tensor scale computed per call, ``DynamicQuantizeMatMul``, moved vectors by up to
        1.3 % in cosine; per row everywhere cost 14 % of its throughput.)"""
        q, w_scale = quantize_per_channel(weight)
        wq = self.const(name + "_q", q)
        rng = self.ranges[name]
        if rng.levels() < MIN_LEVELS:
            return self._int8_rows(x, wq, w_scale, name)
        return self._int8_static(x, wq, w_scale, name, rng)

    def _int8_static(self, x: str, wq: str, w_scale: np.ndarray, name: str, rng: Range) -> str:
        """Two ops: ``QuantizeLinear`` (uint8, asymmetric over the calibrated range) and
        ``MatMulIntegerToFloat`` (ORT's fast u8 x s8 kernel; both scales folded into one
        per-column constant). CUDA (``self.cuda``): the same integers shifted into int8 and ONNX
        ``MatMulInteger`` (the integer product with a CUDA kernel), then the scale."""
        scale, zp = activation_quant(rng.lo, rng.hi)
        out_scale = self.const(name + "_scale", (w_scale * scale).astype(np.float32))
        zero = self.const(name + "_xzp", np.int8(int(zp) - 128) if self.cuda else zp)
        xq = self.op("QuantizeLinear", [x, self.const(name + "_xscale", scale), zero])
        if self.cuda:
            acc = self.op("Cast", [self.op("MatMulInteger", [xq, wq, zero])], to=onnx.TensorProto.FLOAT)
            return self.op("Mul", [acc, out_scale])
        return self.op("MatMulIntegerToFloat",
                       [xq, wq, self._shared("int8_one", np.float32(1.0)), out_scale, zero], domain=MS)

    def _int8_rows(self, x: str, wq: str, w_scale: np.ndarray, name: str) -> str:
        """Each token row its own symmetric scale (``max |x_row| / 127``). CPU: uint8 rows around
        a zero point of 128 (``QuantizeLinear`` along axis 0) so ``MatMulIntegerToFloat`` runs
        the u8 x s8 kernel; the row scales are applied after. CUDA: int8 rows and
        ``MatMulInteger``, then the two scales. The same integers either way."""
        absmax = self.op("ReduceMax", [self.op("Abs", [x])], axes=[-1], keepdims=1)
        row = self.op("Mul", [self.op("Max", [absmax, self._shared("int8_tiny", np.float32(1e-30))]),
                              self._shared("int8_inv127", np.float32(1.0 / 127.0))])  # [tokens, 1]
        flat = self.op("Reshape", [row, self._shared("int8_flat", np.array([-1], np.int64))])
        zero = self._shared("int8_zp", np.int8(0) if self.cuda else np.uint8(128))
        zp = self.op("Expand", [zero, self.op("Shape", [flat])])
        xq = self.op("QuantizeLinear", [x, flat, zp], axis=0)
        if self.cuda:
            acc = self.op("Cast", [self.op("MatMulInteger", [xq, wq])], to=onnx.TensorProto.FLOAT)
            y = self.op("Mul", [acc, self.const(name + "_scale", w_scale)])
        else:
            y = self.op("MatMulIntegerToFloat",
                        [xq, wq, self._shared("int8_one", np.float32(1.0)),
                         self.const(name + "_scale", w_scale), zero], domain=MS)
        return self.op("Mul", [y, row])

    def _shared(self, name: str, value: np.ndarray | np.generic) -> str:
        """A constant stored once however many nodes use it."""
        if name not in self._shared_names:
            self._shared_names.add(name)
            self.const(name, np.asarray(value))
        return name
