"""A plain numpy BERT forward pass: the independent reference the ONNX graph is checked against."""

from __future__ import annotations

import json
from math import erf, sqrt
from pathlib import Path

import numpy as np

from embedserve.store.folder import inspect_folder
from embedserve.store.graph import load_weights

_erf = np.vectorize(erf)


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / sqrt(2.0)))


def forward(folder: Path, ids: list[int]) -> np.ndarray:
    """Pooled (un-normalised) vector of one unpadded sequence, in float64."""
    x = hidden_states(folder, ids)
    n = len(ids)
    return _pool(folder, x, n)


def hidden_states(folder: Path, ids: list[int]) -> np.ndarray:
    """Last hidden state ``(len(ids), hidden)`` of one unpadded sequence, in float64."""
    cfg = json.loads((folder / "config.json").read_text())
    w = {k: v.astype(np.float64) for k, v in load_weights(folder).items() if v.dtype.kind == "f"}
    eps = cfg.get("layer_norm_eps", 1e-12)
    heads = cfg["num_attention_heads"]
    hidden = cfg["hidden_size"]
    hd = hidden // heads
    n = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def lin(name: str, v: np.ndarray, p: str = p) -> np.ndarray:
            return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (lin(f"attention.self.{t}", x).reshape(n, heads, hd).transpose(1, 0, 2)
                   for t in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / sqrt(hd)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(1, 0, 2).reshape(n, hidden)
        x = _layer_norm(lin("attention.output.dense", ctx) + x,
                        w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
        h = _gelu(lin("intermediate.dense", x))
        x = _layer_norm(lin("output.dense", h) + x,
                        w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    return x


def _pool(folder: Path, x: np.ndarray, n: int) -> np.ndarray:
    pooling = inspect_folder(folder).pooling
    if pooling == "cls":
        return x[0]
    if pooling == "max":
        return x.max(0)
    if pooling == "mean_sqrt_len":
        return x.sum(0) / np.sqrt(n)
    return x.mean(0)
