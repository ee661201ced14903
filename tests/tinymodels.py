"""Tiny random-weight ColBERT checkpoints and cross-encoders, in the layouts real ones ship in.

* :func:`make_tiny_colbert`: the colbert-ir/colbertv2.0 layout (colbert-ai's): ``config.json``
  (``HF_ColBERT``), ``artifact.metadata``, ``model.safetensors`` with ``bert.*`` and
  ``linear.weight``, a tokenizer with ``[unused0]``/``[unused1]`` markers.
* :func:`make_tiny_cross_encoder`: the ms-marco-MiniLM layout: ``BertForSequenceClassification``
  with one label, ``bert.*`` + ``bert.pooler.dense.*`` + ``classifier.*``, no ``modules.json``.

Both start from :func:`tinybert.make_tiny_bert`'s encoder weights, so the numbers differ from an
embedder's only where the head does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from tinybert import make_tiny_bert

MARKERS = ("[unused0]", "[unused1]")


def _encoder(folder: Path, seed: int, **kw: int) -> tuple[dict, dict[str, np.ndarray]]:
    from safetensors.numpy import load_file

    make_tiny_bert(folder, seed=seed, extra_tokens=MARKERS, **kw)
    weights = {f"bert.{k}": v for k, v in load_file(str(folder / "model.safetensors")).items()}
    for rel in ("modules.json", "sentence_bert_config.json"):
        (folder / rel).unlink()
    shutil.rmtree(folder / "1_Pooling")
    shutil.rmtree(folder / "2_Normalize", ignore_errors=True)
    config = json.loads((folder / "config.json").read_text())
    return config, weights


def _tokenizer_config(folder: Path, max_len: int) -> None:
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": max_len,
        "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "mask_token": "[MASK]",
        "unk_token": "[UNK]",
    }))
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "mask_token": "[MASK]",
        "unk_token": "[UNK]",
    }))


def make_tiny_colbert(
    folder: Path, *, dim: int = 16, query_maxlen: int = 12, doc_maxlen: int = 24,
    attend_to_mask_tokens: bool = False, seed: int = 3, **kw: int,
) -> Path:
    from safetensors.numpy import save_file

    config, weights = _encoder(folder, seed, max_seq_length=32, **kw)
    hidden = config["hidden_size"]
    rng = np.random.default_rng(seed + 100)
    weights["linear.weight"] = (rng.standard_normal((dim, hidden)) * 0.2).astype(np.float32)
    save_file(weights, str(folder / "model.safetensors"))
    config["architectures"] = ["HF_ColBERT"]
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    _tokenizer_config(folder, 512)
    (folder / "artifact.metadata").write_text(json.dumps({
        "query_token_id": "[unused0]", "doc_token_id": "[unused1]", "query_token": "[Q]",
        "doc_token": "[D]", "query_maxlen": query_maxlen, "doc_maxlen": doc_maxlen, "dim": dim,
        "similarity": "cosine", "attend_to_mask_tokens": attend_to_mask_tokens,
        "mask_punctuation": True, "interaction": "colbert", "checkpoint": str(folder),
    }, indent=2))
    return folder


def make_tiny_cross_encoder(
    folder: Path, *, max_length: int = 40, activation: str | None = None, seed: int = 5, **kw: int,
) -> Path:
    from safetensors.numpy import save_file

    config, weights = _encoder(folder, seed, max_seq_length=32, **kw)
    hidden = config["hidden_size"]
    config["max_position_embeddings"] = max(config["max_position_embeddings"], max_length)
    rng = np.random.default_rng(seed + 200)
    pos = weights["bert.embeddings.position_embeddings.weight"]
    if len(pos) < max_length:
        extra = (rng.standard_normal((max_length - len(pos), hidden)) * 0.2).astype(np.float32)
        weights["bert.embeddings.position_embeddings.weight"] = np.concatenate([pos, extra])
    weights["bert.pooler.dense.weight"] = (rng.standard_normal((hidden, hidden)) * 0.2).astype(np.float32)
    weights["bert.pooler.dense.bias"] = (rng.standard_normal(hidden) * 0.05).astype(np.float32)
    weights["classifier.weight"] = (rng.standard_normal((1, hidden)) * 0.5).astype(np.float32)
    weights["classifier.bias"] = np.array([0.1], np.float32)
    save_file(weights, str(folder / "model.safetensors"))
    config["architectures"] = ["BertForSequenceClassification"]
    config["id2label"] = {"0": "LABEL_0"}
    config["label2id"] = {"LABEL_0": 0}
    if activation is not None:
        config["sentence_transformers"] = {"activation_fn": activation}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    _tokenizer_config(folder, max_length)
    return folder
