"""int8 with static activation ranges (today's tag) against per-row scales computed per call and
per-tensor scales (the two tags before) and the exact fp32 graph: batch invariance, STS-B dev
quality and speed, all in one run.

    .venv/bin/python benchmarks/int8_batch.py --home ~/.embedserve [--passes 3] [--data DIR]

Needs ``all-minilm`` installed in the home and ../shared/data (STS-B dev). The per-tensor and
per-row graphs are the previous builders' (``DynamicQuantizeMatMul``; Abs/ReduceMax row scales,
``QuantizeLinear`` along axis 0, ``MatMulIntegerToFloat``, row ``Mul``), rebuilt here by swapping
that one method.
Speed: texts/s over the 2,910 unique STS-B dev sentences in shuffled batches of 32 (the server's
size), best of ``--passes`` interleaved passes; single text p50 over 300 of them.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from embedserve.engine.base import EngineInfo
from embedserve.engine.onnx import OnnxEngine
from embedserve.engine.tokenizer import TextTokenizer
from embedserve.eval.data import load_stsb, spearman
from embedserve.store import graph as graph_pkg
from embedserve.store.folder import inspect_folder
from embedserve.store.graph.builder import MS, GraphBuilder, quantize_per_channel
from embedserve.store.local import ModelStore


class PerTensorBuilder(GraphBuilder):
    def int8_matmul(self, x: str, weight: np.ndarray, name: str) -> str:
        q, scale = quantize_per_channel(weight)
        return self.op("DynamicQuantizeMatMul",
                       [x, self.const(name + "_q", q), self.const(name + "_scale", scale)], domain=MS)


class PerRowBuilder(GraphBuilder):
    def int8_matmul(self, x: str, weight: np.ndarray, name: str) -> str:
        q, w_scale = quantize_per_channel(weight)
        absmax = self.op("ReduceMax", [self.op("Abs", [x])], axes=[-1], keepdims=1)
        row = self.op("Mul", [self.op("Max", [absmax, self._shared("int8_tiny", np.float32(1e-30))]),
                              self._shared("int8_inv127", np.float32(1.0 / 127.0))])
        flat = self.op("Reshape", [row, self._shared("int8_flat", np.array([-1], np.int64))])
        zero = self._shared("int8_zp", np.uint8(128))
        zp = self.op("Expand", [zero, self.op("Shape", [flat])])
        xq = self.op("QuantizeLinear", [x, flat, zp], axis=0)
        y = self.op("MatMulIntegerToFloat",
                    [xq, self.const(name + "_q", q), self._shared("int8_one", np.float32(1.0)),
                     self.const(name + "_scale", w_scale), zero], domain=MS)
        return self.op("Mul", [y, row])


class StaticPerRowDownBuilder(GraphBuilder):
    """Static ranges, but the FFN's second MatMul (GELU output: long-tailed) per row."""

    def int8_matmul(self, x: str, weight: np.ndarray, name: str) -> str:
        if name.endswith("_out_w"):
            return PerRowBuilder.int8_matmul(self, x, weight, name)  # type: ignore[arg-type]
        return super().int8_matmul(x, weight, name)


def _engine(folder: Path, quantization: str, out: Path,
            builder: type[GraphBuilder] = GraphBuilder) -> OnnxEngine:
    graph_pkg.GraphBuilder = builder  # type: ignore[misc]
    try:
        t0 = time.perf_counter()
        model = graph_pkg.build_graph(folder, quantization)
        print(f"{out.stem}: graph built in {time.perf_counter() - t0:.2f} s", flush=True)
        graph_pkg.save_graph(model, out)
    finally:
        graph_pkg.GraphBuilder = GraphBuilder  # type: ignore[misc]
    meta = inspect_folder(folder)
    info = EngineInfo(name=out.stem, dim=meta.dim, max_tokens=meta.max_tokens, pooling=meta.pooling,
                      normalize=True)
    return OnnxEngine(out, TextTokenizer(folder / "tokenizer.json", meta.max_tokens), info)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, default=Path("~/.embedserve").expanduser())
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--data", type=Path, default=None, help="the shared data folder (../shared/data)")
    ap.add_argument("--limit", type=int, default=0, help="time and check invariance on N texts only")
    ap.add_argument("--repeat", type=int, default=1, help="times each graph runs the texts in a pass")
    args = ap.parse_args()
    folder = ModelStore(args.home, offline=True).get("all-minilm").folder
    rows = load_stsb("dev", args.data)
    texts = sorted({t for r in rows for t in r[:2]})
    rng = random.Random(0)
    order = texts[:]
    rng.shuffle(order)
    every = order
    if args.limit:
        order = order[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        engines = {
            "exact (fp32)": _engine(folder, "fp32", Path(tmp) / "fp32.onnx"),
            "int8 per-tensor (g6 and before)": _engine(folder, "int8", Path(tmp) / "pt.onnx",
                                                       PerTensorBuilder),
            "int8 per-row (g6-g7)": _engine(folder, "int8", Path(tmp) / "pr.onnx", PerRowBuilder),
            "int8 static ranges (now)": _engine(folder, "int8", Path(tmp) / "st.onnx"),
            "int8 static, FFN output per row": _engine(folder, "int8", Path(tmp) / "sd.onnx",
                                                       StaticPerRowDownBuilder),
        }
        ids = {t: i for t, i in zip(every, engines["exact (fp32)"].tokenize(every))}
        batches = [[ids[t] for t in order[i : i + 32]] for i in range(0, len(order), 32)]
        speed: dict[str, list[float]] = {k: [] for k in engines}
        single: dict[str, list[float]] = {k: [] for k in engines}
        for _ in range(args.passes):
            for name, eng in engines.items():
                t0 = time.perf_counter()
                for _ in range(args.repeat):
                    for b in batches:
                        eng.embed_ids(b)
                speed[name].append(args.repeat * len(order) / (time.perf_counter() - t0))
                for t in order[:100]:
                    t0 = time.perf_counter()
                    eng.embed_ids([ids[t]])
                    single[name].append((time.perf_counter() - t0) * 1e3)
        print("| graph | texts/s (batches of 32) | single text p50 ms | alone vs batched, min cos | "
              "STS-B dev Spearman | vs exact |")
        print("|---|---:|---:|---:|---:|---:|")
        exact_score = None
        for name, eng in engines.items():
            batched = _unit(np.concatenate([eng.embed_ids(b) for b in batches]))
            alone = _unit(np.concatenate([eng.embed_ids([ids[t]]) for t in order]))
            inv = float((batched * alone).sum(1).min())
            chunks = [[ids[t] for t in every[i : i + 32]] for i in range(0, len(every), 32)]
            vec = dict(zip(every, _unit(np.concatenate([eng.embed_ids(c) for c in chunks]))))
            score = spearman([float(vec[a] @ vec[b]) for a, b, _ in rows], [g for _, _, g in rows])
            exact_score = score if exact_score is None else exact_score
            print(f"| {name} | {max(speed[name]):,.0f} | {statistics.median(single[name]):.2f} | "
                  f"{inv:.6f} | {score:.4f} | {score - exact_score:+.4f} |")
        old = "int8 per-tensor (g6 and before)"
        print()
        for name in list(engines)[2:]:
            ratios = [a / b for a, b in zip(speed[name], speed[old])]
            print(f"{name} / per-tensor speed: best of passes {max(speed[name]) / max(speed[old]):.3f}x, "
                  f"median of the per-pass ratios {statistics.median(ratios):.3f} "
                  f"({', '.join(f'{r:.3f}' for r in ratios)}); single text p50 "
                  f"{statistics.median(single[name]):.2f} vs {statistics.median(single[old]):.2f} ms")

if __name__ == "__main__":
    main()
