"""Generate a small sentence-transformers BERT folder with random weights, for tests.

Stands in for models that exist only on the Hugging Face hub (all-MiniLM-L12-v2): same files,
same code path, another layer count and width.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np

WORDS = (
    "the a an is are was of to in and or on for with sky blue grass green why how what man woman "
    "plays playing guitar music dog cat runs running fast slow red cold hot day night library "
    "book books search index query model vector embed embedding token tokens text long short"
).split()


def _tokenizer_json(folder: Path, max_len: int, extra_tokens: tuple[str, ...] = ()) -> int:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab += ["##" + c for c in string.ascii_lowercase + string.digits]
    vocab += [w for w in WORDS if w not in vocab]
    vocab += [t for t in extra_tokens if t not in vocab]
    ids = {t: i for i, t in enumerate(vocab)}
    tok = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    # like all-MiniLM's file: asks for fixed padding and a shorter truncation, which we must ignore
    tok.enable_truncation(max_length=max(8, max_len // 2))
    tok.enable_padding(length=max(8, max_len // 2), pad_id=0, pad_token="[PAD]")
    tok.save(str(folder / "tokenizer.json"))
    return len(vocab)


def make_tiny_bert(
    folder: Path,
    *,
    layers: int = 3,
    hidden: int = 48,
    heads: int = 4,
    intermediate: int = 96,
    max_seq_length: int = 32,
    pooling: str = "mean",
    normalize: bool = True,
    seed: int = 0,
    extra_tokens: tuple[str, ...] = (),
) -> Path:
    """Write config.json, tokenizer.json, modules.json, 1_Pooling/, model.safetensors into folder."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = _tokenizer_json(folder, max_seq_length, extra_tokens)
    max_pos = max_seq_length * 2
    config = {
        "architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
        "hidden_size": hidden, "intermediate_size": intermediate, "layer_norm_eps": 1e-12,
        "max_position_embeddings": max_pos, "num_attention_heads": heads,
        "num_hidden_layers": layers, "pad_token_id": 0, "position_embedding_type": "absolute",
        "type_vocab_size": 2, "vocab_size": vocab_size,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False})
    )
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": pooling == "mean_sqrt_len",
    }))
    rng = np.random.default_rng(seed)

    def r(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    w: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": r(vocab_size, hidden),
        "embeddings.position_embeddings.weight": r(max_pos, hidden),
        "embeddings.token_type_embeddings.weight": r(2, hidden),
        "embeddings.LayerNorm.weight": 1 + r(hidden, scale=0.05),
        "embeddings.LayerNorm.bias": r(hidden, scale=0.05),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for n in ("query", "key", "value"):
            w[p + f"attention.self.{n}.weight"] = r(hidden, hidden)
            w[p + f"attention.self.{n}.bias"] = r(hidden, scale=0.05)
        w[p + "attention.output.dense.weight"] = r(hidden, hidden)
        w[p + "attention.output.dense.bias"] = r(hidden, scale=0.05)
        w[p + "attention.output.LayerNorm.weight"] = 1 + r(hidden, scale=0.05)
        w[p + "attention.output.LayerNorm.bias"] = r(hidden, scale=0.05)
        w[p + "intermediate.dense.weight"] = r(intermediate, hidden)
        w[p + "intermediate.dense.bias"] = r(intermediate, scale=0.05)
        w[p + "output.dense.weight"] = r(hidden, intermediate)
        w[p + "output.dense.bias"] = r(hidden, scale=0.05)
        w[p + "output.LayerNorm.weight"] = 1 + r(hidden, scale=0.05)
        w[p + "output.LayerNorm.bias"] = r(hidden, scale=0.05)
    save_file(w, str(folder / "model.safetensors"))
    return folder
