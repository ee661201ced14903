"""A plain numpy NomicBERT forward pass, written from the published architecture (nomic-ai's
contrastors ``NomicBertModel``: post-norm, rotary on Q and K, SwiGLU ``fc11(x) * silu(fc12(x))``,
no biases): the independent reference for the graph where transformers needs remote code.

Rotation is done with complex numbers (pairs ``(x[i], x[i + d/2])``), not the graph's
rotate-half tables, so a shared mistake is unlikely.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file


def _ln(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b


@functools.lru_cache(maxsize=4)
def _load(folder: Path) -> tuple[dict, dict[str, np.ndarray]]:
    cfg = json.loads((folder / "config.json").read_text())
    return cfg, {k: v.astype(np.float64) for k, v in load_file(str(folder / "model.safetensors")).items()}


def forward(folder: Path, ids: list[int]) -> np.ndarray:
    """Mean-pooled (un-normalised) vector of one unpadded sequence, float64."""
    cfg, w = _load(Path(folder))
    h, heads, eps = cfg["n_embd"], cfg["n_head"], cfg["layer_norm_epsilon"]
    d = h // heads
    n = len(ids)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.token_type_embeddings.weight"][0]
    x = _ln(x, w["emb_ln.weight"], w["emb_ln.bias"], eps)
    theta = np.arange(n)[:, None] * cfg["rotary_emb_base"] ** (-np.arange(0, d, 2) / d)[None, :]
    turn = np.exp(1j * theta)[:, None, :]  # [n, 1, d/2]

    def rotate(t: np.ndarray) -> np.ndarray:  # t: [n, heads, d]
        z = (t[..., : d // 2] + 1j * t[..., d // 2 :]) * turn
        return np.concatenate([z.real, z.imag], axis=-1)

    for i in range(cfg["n_layer"]):
        p = f"encoder.layers.{i}."
        q, k, v = (x @ w[p + "attn.Wqkv.weight"].T).reshape(n, 3, heads, d).transpose(1, 0, 2, 3)
        q, k = rotate(q), rotate(k)
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(d)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        ctx = np.einsum("hqk,khd->qhd", probs, v).reshape(n, h)
        x = _ln(x + ctx @ w[p + "attn.out_proj.weight"].T, w[p + "norm1.weight"], w[p + "norm1.bias"], eps)
        gate = x @ w[p + "mlp.fc12.weight"].T
        y = (x @ w[p + "mlp.fc11.weight"].T) * gate / (1 + np.exp(-gate))
        x = _ln(x + y @ w[p + "mlp.fc2.weight"].T, w[p + "norm2.weight"], w[p + "norm2.bias"], eps)
    return x.mean(0)
