"""A GGUF embedding model -> a sentence-transformers folder the ONNX builder takes.

The inverse of llama.cpp's ``convert_hf_to_gguf.py`` for the architectures embedserve builds:

* ``bert`` with a WordPiece vocabulary: BERT (all-minilm, bge, mxbai-embed-large, snowflake-arctic-embed);
  with a SentencePiece (``t5``) vocabulary: XLM-RoBERTa (bge-m3, paraphrase-multilingual), whose
  first ``pad_token_id + 1`` position rows the converter dropped: they come back as zeros (they
  are never read, positions start past them).
* ``nomic-bert``: NomicBERT (nomic-embed-text v1/v1.5): rotary (``rope.freq_base``), SwiGLU
  (``ffn_up`` x silu(``ffn_gate``)), a fused QKV, no biases; written back with nomic-ai's config
  keys and tensor names. The MoE variant (``nomic-bert-moe``) is refused.

Tensor names go GGUF role -> the family's own names (:mod:`embedserve.store.family`), so the
two tables cannot drift apart.

Written: ``config.json`` (from ``<arch>.*`` keys), ``model.safetensors`` (tensors renamed back to
Hugging Face names; F16 kept as float16, everything else float32), ``tokenizer.json`` (see
:mod:`.tokenizer`), ``modules.json`` + ``1_Pooling/config.json`` (``<arch>.pooling_type``) +
``2_Normalize`` (Ollama L2-normalises every embedding), ``sentence_bert_config.json`` (the
window: ``<arch>.context_length``, the one llama.cpp and Ollama use).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from embedserve.errors import InvalidInput
from embedserve.store.family import BERT, NOMIC_BERT, Family
from embedserve.store.ollama.gguf_file import GGUFFile
from embedserve.store.ollama.tokenizer import tokenizer_json

SUPPORTED_ARCHITECTURES = ("bert", "nomic-bert")
_POOLINGS = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token"}
_EMBEDDING_ROLES = {  # GGUF name -> role in Family.embeddings
    "token_embd": "word", "position_embd": "position", "token_types": "token_type",
    "token_embd_norm": "ln",
}
_LAYER_ROLES = {  # GGUF blk.N.<name> -> role in Family.layer
    "attn_q": "q", "attn_k": "k", "attn_v": "v", "attn_qkv": "qkv", "attn_output": "o",
    "attn_output_norm": "ln1", "ffn_up": "up", "ffn_gate": "gate", "ffn_down": "down",
    "layer_output_norm": "ln2",
}
_EMBEDDING = re.compile(r"([a-z_]+)\.(weight|bias)")
_BLOCK = re.compile(r"blk\.(\d+)\.([a-z_]+)\.(weight|bias)")


def _family(gg: GGUFFile) -> Family:
    return NOMIC_BERT if gg.architecture == "nomic-bert" else BERT


def _hf_name(name: str, family: Family) -> list[str] | None:
    """The family's names for a GGUF tensor (three for a fused QKV the family keeps apart), None
    if unknown."""
    m = _EMBEDDING.fullmatch(name)
    if m is not None:
        role = family.embeddings.get(_EMBEDDING_ROLES.get(m.group(1), ""))
        return None if role is None else [f"{role}.{m.group(2)}"]
    m = _BLOCK.fullmatch(name)
    if m is None:
        return None
    layer, part, kind = m.groups()
    prefix = family.layer_prefix.format(i=layer)
    role = _LAYER_ROLES.get(part)
    if role in family.layer:
        return [f"{prefix}{family.layer[role]}.{kind}"]
    if role == "qkv":
        return [f"{prefix}{family.layer[r]}.{kind}" for r in ("q", "k", "v")]
    return None


def _need(gg: GGUFFile, key: str) -> Any:
    value = gg.key(key)
    if value is None:
        raise InvalidInput(f"the GGUF file lacks {gg.architecture}.{key}")
    return value


def _nomic_config(gg: GGUFFile, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    """nomic-ai's config keys (what the ONNX builder and nomic's own loader read)."""
    types = tensors.get("embeddings.token_type_embeddings.weight")
    config: dict[str, Any] = {
        "architectures": ["NomicBertModel"], "model_type": "nomic_bert",
        "activation_function": "swiglu", "causal": False, "prenorm": False,
        "parallel_block": False, "use_rms_norm": False,
        "qkv_proj_bias": False, "mlp_fc1_bias": False, "mlp_fc2_bias": False,
        "n_embd": int(_need(gg, "embedding_length")),
        "n_head": int(_need(gg, "attention.head_count")),
        "n_inner": int(_need(gg, "feed_forward_length")),
        "n_layer": int(_need(gg, "block_count")),
        "n_positions": int(_need(gg, "context_length")),
        "rotary_emb_base": float(gg.key("rope.freq_base", 10000.0)),
        "rotary_emb_fraction": 1.0, "rotary_emb_interleaved": False, "rotary_scaling_factor": None,
        "layer_norm_epsilon": float(gg.key("attention.layer_norm_epsilon", 1e-12)),
        "type_vocab_size": 1 if types is None else int(types.shape[0]),
        "vocab_size": int(tensors["embeddings.word_embeddings.weight"].shape[0]),
    }
    pad = gg.metadata.get("tokenizer.ggml.padding_token_id")
    if pad is not None:
        config["pad_token_id"] = int(pad)
    return config


def _config(gg: GGUFFile, tensors: dict[str, np.ndarray], xlmr: bool) -> dict[str, Any]:
    if _family(gg) is NOMIC_BERT:
        return _nomic_config(gg, tensors)

    def need(key: str) -> Any:
        return _need(gg, key)

    vocab = tensors["embeddings.word_embeddings.weight"].shape[0]
    types = tensors.get("embeddings.token_type_embeddings.weight")
    positions = tensors["embeddings.position_embeddings.weight"].shape[0]
    config: dict[str, Any] = {
        "architectures": ["XLMRobertaModel" if xlmr else "BertModel"],
        "model_type": "xlm-roberta" if xlmr else "bert",
        "hidden_size": int(need("embedding_length")),
        "num_hidden_layers": int(need("block_count")),
        "num_attention_heads": int(need("attention.head_count")),
        "intermediate_size": int(need("feed_forward_length")),
        "hidden_act": "gelu",
        "layer_norm_eps": float(gg.key("attention.layer_norm_epsilon", 1e-12)),
        "max_position_embeddings": positions,
        "type_vocab_size": 1 if types is None else int(types.shape[0]),
        "vocab_size": int(vocab),
        "position_embedding_type": "absolute",
    }
    pad = gg.metadata.get("tokenizer.ggml.padding_token_id")
    if pad is not None:
        config["pad_token_id"] = int(pad)
    return config


def read_tensors(gg: GGUFFile, xlmr: bool) -> dict[str, np.ndarray]:
    family = _family(gg)
    out: dict[str, np.ndarray] = {}
    unknown = []
    for name, value in gg.tensors():
        hf = _hf_name(name, family)
        if hf is None:
            unknown.append(name)
        elif len(hf) == 3:
            for key, part in zip(hf, np.split(value, 3, axis=0)):
                out[key] = np.ascontiguousarray(part)
        else:
            out[hf[0]] = value
    if unknown:
        raise InvalidInput(
            f"the GGUF file holds tensors embedserve does not know for {gg.architecture}: "
            + ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        )
    for role in ("word", "position"):
        need = family.embeddings.get(role)
        if need is not None and need + ".weight" not in out:
            raise InvalidInput(f"the GGUF file has no {need}.weight tensor")
    if xlmr:  # the converter dropped the rows before pad_token_id + 1: put them back
        offset = int(gg.metadata.get("tokenizer.ggml.padding_token_id", 1)) + 1
        pos = out["embeddings.position_embeddings.weight"]
        out["embeddings.position_embeddings.weight"] = np.concatenate(
            [np.zeros((offset, pos.shape[1]), pos.dtype), pos]
        )
    return out


def check_convertible(gg: GGUFFile) -> None:
    """Refuse what cannot become an embedserve model, saying why (before any work)."""
    if gg.pooling is None:
        raise InvalidInput(
            f"it is not an embedding model (a {gg.architecture} chat/completion model: "
            f"its GGUF has no {gg.architecture}.pooling_type)"
        )
    if gg.architecture not in SUPPORTED_ARCHITECTURES:
        raise InvalidInput(
            f"GGUF architecture {gg.architecture!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    if gg.pooling not in _POOLINGS:
        raise InvalidInput(
            f"pooling {gg.pooling!r} is not supported (only {', '.join(_POOLINGS)})"
        )
    gg.check_types()


def write_folder(
    gg: GGUFFile, dest: Path, on_step: Callable[[str], None] | None = None
) -> Path:
    """Write the sentence-transformers folder for ``gg`` into ``dest`` (created)."""
    from safetensors.numpy import save_file

    check_convertible(gg)
    step = on_step or (lambda _: None)
    xlmr = gg.metadata.get("tokenizer.ggml.model") == "t5"
    step("rebuilding the tokenizer")
    tok = tokenizer_json(gg.metadata)
    step(f"reading {len(gg.tensor_types)} tensors ({gg.file_type})")
    tensors = read_tensors(gg, xlmr)
    config = _config(gg, tensors, xlmr)
    dest.mkdir(parents=True, exist_ok=True)
    step("writing model.safetensors")
    save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "pt"})
    (dest / "tokenizer.json").write_text(tok, encoding="utf-8")
    window = int(gg.key("context_length") or config["max_position_embeddings"])
    if xlmr:
        window = min(window, config["max_position_embeddings"] - config.get("pad_token_id", 1) - 1)
    files: dict[str, Any] = {
        "config.json": config,
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize",
             "type": "sentence_transformers.models.Normalize"},
        ],
        "1_Pooling/config.json": {
            "word_embedding_dimension": config.get("hidden_size") or config["n_embd"],
            **{key: name == gg.pooling for name, key in _POOLINGS.items()},
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
        "sentence_bert_config.json": {"max_seq_length": window, "do_lower_case": False},
    }
    for rel, data in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return dest
