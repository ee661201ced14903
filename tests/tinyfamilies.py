"""Tiny random-weight models of each architecture family, as real Hugging Face folders.

BERT (any pooling; BERT-large style CLS), RoBERTa / XLM-RoBERTa (Unigram SentencePiece-style
tokenizer, position ids from padding_idx + 1) and MPNet are made with ``transformers`` (random
init, ``save_pretrained``), so sentence-transformers can load them as the reference. NomicBERT
needs remote code in transformers: its folder is written from numpy with the tensor names of
nomic-ai's checkpoints, and checked against an independent forward pass (numpy_nomic.py) and,
when installed, llama.cpp.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tinybert import WORDS

CORPUS = [
    "the man plays the guitar", "a woman is playing music", "why is the sky blue",
    "the dog runs fast in the cold night", "search the library index for books",
    "der Hund läuft schnell über die Wiese", "le chat dort sur le livre rouge",
    "el modelo convierte el texto en un vector", "猫が本の上で寝ている", "Собака бежит быстро",
    " ".join(WORDS),
]


def unigram_tokenizer(folder: Path, *, vocab_size: int = 300) -> int:
    """An XLM-R style tokenizer.json: Unigram + Metaspace, ``<s> $A </s>``, ids 0-3 special."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import UnigramTrainer

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("  ", " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>")
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tok.save(str(folder / "tokenizer.json"))
    return tok.get_vocab_size()


def sentencepiece_tokenizer(folder: Path, *, vocab_size: int = 120) -> int:
    """XLM-R's own tokenizer files: a real SentencePiece Unigram model trained tiny
    (``sentencepiece.bpe.model``, what llama.cpp's converter reads) and the ``tokenizer.json``
    transformers derives from it (fairseq's ids: ``<s> <pad> </s> <unk>``, pieces shifted by
    one, ``<mask>`` last). Needs the ``sentencepiece`` package."""
    import sentencepiece as spm
    import transformers as tf

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20), model_prefix=str(folder / "sentencepiece.bpe"),
        vocab_size=vocab_size, hard_vocab_limit=False, model_type="unigram",
        character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2,
    )
    (folder / "sentencepiece.bpe.vocab").unlink()
    tok = tf.XLMRobertaTokenizer.from_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return len(tok)


def wordpiece_tokenizer(folder: Path, specials: tuple[str, str, str, str, str]) -> int:
    """A WordPiece tokenizer.json whose first ids are ``specials`` (cls, pad, sep, unk, mask order
    as given: BERT's [PAD] [UNK] [CLS] [SEP] [MASK], MPNet's <s> <pad> </s> <unk> <mask>)."""
    import string

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = list(specials) + list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab += ["##" + c for c in string.ascii_lowercase + string.digits]
    vocab += [w for w in WORDS if w not in vocab]
    ids = {t: i for i, t in enumerate(vocab)}
    bert = specials[0] == "[PAD]"
    cls, sep, unk = ("[CLS]", "[SEP]", "[UNK]") if bert else ("<s>", "</s>", "<unk>")
    tok = Tokenizer(models.WordPiece(ids, unk_token=unk))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, ids[cls]), (sep, ids[sep])],
    )
    tok.save(str(folder / "tokenizer.json"))
    return len(vocab)


def _st_files(folder: Path, *, hidden: int, pooling: str, max_seq_length: int, normalize: bool,
              prompts: dict[str, str] | None, default_prompt: str | None,
              tokenizer_config: dict[str, Any]) -> None:
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}))
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
    (folder / "config_sentence_transformers.json").write_text(json.dumps({
        "prompts": prompts or {}, "default_prompt_name": default_prompt,
        "similarity_fn_name": "cosine",
    }))
    config_path = folder / "tokenizer_config.json"  # transformers may have written one already
    existing = json.loads(config_path.read_text()) if config_path.is_file() else {}
    config_path.write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", **existing, "model_max_length": max_seq_length,
         **tokenizer_config}))


def make_hf_model(folder: Path, family: str, *, layers: int = 2, hidden: int = 32, heads: int = 4,
                  max_seq_length: int = 40, pooling: str = "mean", normalize: bool = True,
                  prompts: dict[str, str] | None = None, default_prompt: str | None = None,
                  seed: int = 0, sentencepiece: bool = False) -> Path:
    """A tiny ``family`` ("bert", "roberta", "xlm-roberta", "mpnet") folder made by transformers;
    ``sentencepiece``: XLM-R's tokenizer from a real SentencePiece model (see
    :func:`sentencepiece_tokenizer`), else one trained by ``tokenizers``."""
    import torch
    import transformers as tf

    folder.mkdir(parents=True, exist_ok=True)
    common: dict[str, Any] = dict(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=hidden * 2, hidden_act="gelu",
    )
    if family == "bert":
        vocab = wordpiece_tokenizer(folder, ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"))
        cfg = tf.BertConfig(vocab_size=vocab, max_position_embeddings=max_seq_length + 8,
                            pad_token_id=0, **common)
        special = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]"}
        model_cls: Any = tf.BertModel
    elif family in ("roberta", "xlm-roberta"):
        vocab = sentencepiece_tokenizer(folder) if sentencepiece else unigram_tokenizer(folder)
        config_cls = tf.XLMRobertaConfig if family == "xlm-roberta" else tf.RobertaConfig
        cfg = config_cls(vocab_size=vocab, max_position_embeddings=max_seq_length + 2,
                         pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1,
                         layer_norm_eps=1e-5, **common)
        special = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
        model_cls = tf.XLMRobertaModel if family == "xlm-roberta" else tf.RobertaModel
    elif family == "mpnet":
        vocab = wordpiece_tokenizer(folder, ("<s>", "<pad>", "</s>", "<unk>", "<mask>"))
        cfg = tf.MPNetConfig(vocab_size=vocab, max_position_embeddings=max_seq_length + 2,
                             pad_token_id=1, bos_token_id=0, eos_token_id=2,
                             layer_norm_eps=1e-5, relative_attention_num_buckets=32, **common)
        special = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
        model_cls = tf.MPNetModel
    else:
        raise ValueError(family)
    torch.manual_seed(seed)
    model = model_cls(cfg, add_pooling_layer=False) if family != "mpnet" else model_cls(cfg)
    with torch.no_grad():  # random init is near-identity LayerNorms; shake everything
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(str(folder), safe_serialization=True)
    _st_files(folder, hidden=hidden, pooling=pooling, max_seq_length=max_seq_length,
              normalize=normalize, prompts=prompts, default_prompt=default_prompt,
              tokenizer_config=special)
    return folder


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def make_nomic(folder: Path, *, layers: int = 2, hidden: int = 32, heads: int = 4,
               intermediate: int = 48, max_seq_length: int = 64, seed: int = 0,
               prompts: dict[str, str] | None = None, tokenizer_from: Path | None = None) -> Path:
    """A tiny NomicBERT folder (nomic-embed-text's config keys and tensor names), numpy weights.

    ``tokenizer_from``: a folder whose BERT WordPiece tokenizer files are copied (nomic-embed-text
    uses bert-base-uncased's, as all-MiniLM does): llama.cpp's converter only takes a vocabulary
    it knows by hash; otherwise a tiny one is made."""
    import shutil

    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    if tokenizer_from is None:
        vocab = wordpiece_tokenizer(folder, ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"))
    else:
        from tokenizers import Tokenizer

        for name in _TOKENIZER_FILES:
            if (tokenizer_from / name).is_file():
                shutil.copyfile(tokenizer_from / name, folder / name)
        vocab = Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab_size()
    config = {
        "architectures": ["NomicBertModel"], "model_type": "nomic_bert",
        "activation_function": "swiglu", "causal": False, "n_embd": hidden, "n_head": heads,
        "n_inner": intermediate, "n_layer": layers, "n_positions": 8192, "prenorm": False,
        "parallel_block": False, "qkv_proj_bias": False, "mlp_fc1_bias": False,
        "mlp_fc2_bias": False, "rotary_emb_base": 1000, "rotary_emb_fraction": 1.0,
        "rotary_emb_interleaved": False, "rotary_scaling_factor": None,
        "rotary_emb_scale_base": None, "max_trained_positions": 2048,
        "layer_norm_epsilon": 1e-12, "type_vocab_size": 2, "vocab_size": vocab,
        "use_rms_norm": False, "pad_token_id": 0, "bos_token_id": None, "eos_token_id": None,
    }
    # transformers >= 5 knows nomic_bert natively, with Hugging Face key names and the real
    # model's sizes as defaults; llama.cpp's converter reads the config through it, so the tiny
    # sizes are repeated under those names (what nomic-ai's own loader reads is unchanged)
    config.update(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  intermediate_size=intermediate, layer_norm_eps=1e-12)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    rng = np.random.default_rng(seed)

    def r(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    w = {
        "embeddings.word_embeddings.weight": r(vocab, hidden),
        "embeddings.token_type_embeddings.weight": r(2, hidden),
        "emb_ln.weight": 1 + r(hidden, scale=0.05), "emb_ln.bias": r(hidden, scale=0.05),
    }
    for i in range(layers):
        p = f"encoder.layers.{i}."
        w[p + "attn.Wqkv.weight"] = r(3 * hidden, hidden)
        w[p + "attn.out_proj.weight"] = r(hidden, hidden)
        w[p + "mlp.fc11.weight"] = r(intermediate, hidden)
        w[p + "mlp.fc12.weight"] = r(intermediate, hidden)
        w[p + "mlp.fc2.weight"] = r(hidden, intermediate)
        for n in ("norm1", "norm2"):
            w[p + n + ".weight"] = 1 + r(hidden, scale=0.05)
            w[p + n + ".bias"] = r(hidden, scale=0.05)
    save_file(w, str(folder / "model.safetensors"))
    _st_files(folder, hidden=hidden, pooling="mean", max_seq_length=max_seq_length, normalize=True,
              prompts=prompts or {"search_query": "search_query: ",
                                  "search_document": "search_document: "},
              default_prompt=None,
              tokenizer_config={"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                                "unk_token": "[UNK]"})
    return folder
