"""Ollama stores and GGUF files for the import tests.

* :func:`ollama_layout` lays a GGUF out the way Ollama does (``manifests/<host>/<ns>/<model>/<tag>``,
  ``blobs/sha256-<hex>``, a config blob, a license layer).
* :func:`write_gguf` writes a GGUF from a sentence-transformers BERT folder with the ``gguf``
  package's writer, naming tensors and vocabulary the way llama.cpp's converter does (the real
  converter refuses the tiny test vocabulary: it identifies tokenizers by a hash of known ones),
  so the fast tests need no torch. The real converter is exercised in test_import_real.py.
* :func:`llama_cpp_tree`: llama.cpp's ``convert_hf_to_gguf.py`` (with its gguf-py), taken from the
  ``llama-cpp-python`` sdist that pip downloads once into pytest's cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
_CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")


def _blob(root: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / f"sha256-{digest}").write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def ollama_layout(
    root: Path,
    name: str,
    gguf: Path,
    *,
    namespace: str = "library",
    host: str = "registry.ollama.ai",
    family: str = "bert",
) -> Path:
    """Install ``gguf`` as ``name`` (``model:tag``) in the Ollama store ``root``; the manifest path."""
    model, _, tag = name.partition(":")
    tag = tag or "latest"
    data = gguf.read_bytes()
    layer = {"mediaType": "application/vnd.ollama.image.model", **_blob(root, data)}
    license_layer = {"mediaType": "application/vnd.ollama.image.license",
                     **_blob(root, b"Apache License 2.0\n")}
    config = {
        "model_format": "gguf", "model_family": family, "model_families": [family],
        "model_type": "22.57M", "file_type": "F16", "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"], license_layer["digest"]]},
    }
    config_layer = {"mediaType": "application/vnd.docker.container.image.v1+json",
                    **_blob(root, json.dumps(config).encode())}
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": config_layer,
        "layers": [layer, license_layer],
    }
    path = root / "manifests" / host / namespace / model / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return path


def blob_of(root: Path, manifest: Path) -> Path:
    digest = json.loads(manifest.read_text())["layers"][0]["digest"].split(":")[1]
    return root / "blobs" / f"sha256-{digest}"


_LAYER = {
    "attention.self.query": "attn_q", "attention.self.key": "attn_k",
    "attention.self.value": "attn_v", "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm", "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down", "output.LayerNorm": "layer_output_norm",
}
_EMB = {
    "embeddings.word_embeddings.weight": "token_embd.weight",
    "embeddings.position_embeddings.weight": "position_embd.weight",
    "embeddings.token_type_embeddings.weight": "token_types.weight",
    "embeddings.LayerNorm.weight": "token_embd_norm.weight",
    "embeddings.LayerNorm.bias": "token_embd_norm.bias",
}


def _gguf_name(hf: str) -> str:
    if hf in _EMB:
        return _EMB[hf]
    _, _, layer, rest = hf.split(".", 3)
    part, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{_LAYER[part]}.{kind}"


def write_gguf(
    folder: Path,
    out: Path,
    *,
    tensor_type: str = "F32",
    architecture: str = "bert",
    pooling: int | None = 1,
    lowercase_key: bool = True,
) -> Path:
    """A GGUF of the BERT folder ``folder``; ``tensor_type`` for the 2-D weights (1-D stay F32)."""
    import gguf
    from safetensors.numpy import load_file

    config = json.loads((folder / "config.json").read_text())
    tok = json.loads((folder / "tokenizer.json").read_text())
    w = gguf.GGUFWriter(str(out), architecture)
    w.add_block_count(config["num_hidden_layers"])
    w.add_context_length(config["max_position_embeddings"] - (
        config["pad_token_id"] + 1 if config.get("model_type") == "xlm-roberta" else 0))
    w.add_embedding_length(config["hidden_size"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(config["num_attention_heads"])
    w.add_layer_norm_eps(config["layer_norm_eps"])
    w.add_causal_attention(False)
    if pooling is not None:
        w.add_pooling_type(gguf.PoolingType(pooling))
    special = {t["content"] for t in tok["added_tokens"] if t["special"]}
    offset = 0
    if tok["model"]["type"] == "Unigram":  # XLM-R: SentencePiece pieces with scores, as "t5"
        pieces = [p for p, _ in tok["model"]["vocab"]]
        w.add_tokenizer_model("t5")
        w.add_token_list(pieces)
        w.add_token_scores([float(sc) for _, sc in tok["model"]["vocab"]])
        w.add_token_types([gguf.TokenType.UNKNOWN if p == "<unk>" else gguf.TokenType.CONTROL
                           if p in special else gguf.TokenType.NORMAL for p in pieces])
        w.add_add_space_prefix(True)
        w.add_remove_extra_whitespaces(True)
        ids = {p: i for i, p in enumerate(pieces)}
        w.add_bos_token_id(ids["<s>"])
        w.add_eos_token_id(ids["</s>"])
        w.add_sep_token_id(ids["</s>"])
        w.add_pad_token_id(ids["<pad>"])
        w.add_unk_token_id(ids["<unk>"])
        offset = config["pad_token_id"] + 1  # the converter drops the rows before padding_idx + 1
    else:
        vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
        tokens, types = [], []
        for piece, _ in vocab:  # llama.cpp's "phantom space" form
            if piece in special:
                tokens.append(piece)
                types.append(gguf.TokenType.CONTROL)
            else:
                tokens.append(piece[2:] if piece.startswith("##") else "\u2581" + piece)
                types.append(gguf.TokenType.NORMAL)
        ids = dict(vocab)
        w.add_tokenizer_model("bert")
        w.add_token_list(tokens)
        w.add_token_types(types)
        # no CLS id: the converter's gguf has no key for it (llama.cpp falls back to [CLS] = 101)
        w.add_sep_token_id(ids["[SEP]"])
        w.add_pad_token_id(ids["[PAD]"])
        w.add_unk_token_id(ids["[UNK]"])
        w.add_mask_token_id(ids["[MASK]"])
        if lowercase_key:
            w.add_bool("tokenizer.ggml.normalizer.lowercase", True)  # newer converters write it
    w.add_token_type_count(config.get("type_vocab_size", 2))
    qtype = gguf.GGMLQuantizationType[tensor_type]
    for hf, value in load_file(str(folder / "model.safetensors")).items():
        value = value.astype(np.float32)
        hf = hf.removeprefix("roberta.")
        if hf == "embeddings.position_embeddings.weight":
            value = value[offset:]
        if hf == "embeddings.position_ids":
            continue
        if value.ndim == 2 and qtype != gguf.GGMLQuantizationType.F32:
            if qtype == gguf.GGMLQuantizationType.F16:
                w.add_tensor(_gguf_name(hf), value.astype(np.float16))
            elif value.shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0]:  # as the converter: F16
                w.add_tensor(_gguf_name(hf), value.astype(np.float16))
            else:
                w.add_tensor(_gguf_name(hf), gguf.quants.quantize(value, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(_gguf_name(hf), value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def write_chat_gguf(out: Path) -> Path:
    """A tiny GGUF shaped like a chat model: a llama architecture, no pooling_type."""
    import gguf

    w = gguf.GGUFWriter(str(out), "llama")
    w.add_block_count(1)
    w.add_context_length(16)
    w.add_embedding_length(8)
    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>", "a"])
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def llama_cpp_tree(cache: Path) -> Path | None:
    """The llama.cpp tree holding convert_hf_to_gguf.py, from the pip-downloaded sdist; None if
    pip cannot get it."""
    tree = cache / "llama.cpp"
    if (tree / "convert_hf_to_gguf.py").is_file():
        return tree
    cache.mkdir(parents=True, exist_ok=True)
    sdists = sorted(cache.glob("llama_cpp_python-*.tar.gz"))
    if not sdists:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "--disable-pip-version-check", "-q", "-d", str(cache), LLAMA_CPP_PYTHON],
            capture_output=True, text=True, timeout=1500,
        )
        sdists = sorted(cache.glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not sdists:
            return None
    staging = cache / f"extract-{os.getpid()}"
    with tarfile.open(sdists[-1]) as tar:
        members = []
        for m in tar.getmembers():
            _, _, rel = m.name.partition("/vendor/llama.cpp/")
            if rel and rel.startswith(_CONVERTER_PARTS) and (m.isfile() or m.isdir()):
                m.name = rel
                members.append(m)
        try:
            tar.extractall(staging, members=members, filter="data")
        except TypeError:  # Python < 3.11.4: no extraction filters
            tar.extractall(staging, members=members)
    staging.rename(tree)
    return tree


def converter(request: Any) -> Path:
    """For a fixture: llama.cpp's converter tree, cached by pytest; skips (fails in CI) without
    pip access, and without torch and transformers, which the converter runs on."""
    import pytest
    from servicekit import require

    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    tree = llama_cpp_tree(Path(request.config.cache.mkdir("llama-cpp-python")))
    require(tree is not None, "pip access to the llama-cpp-python sdist (llama.cpp's converter)")
    assert tree is not None
    return tree


def convert_with_llama_cpp(tree: Path, folder: Path, out: Path, outtype: str) -> Path:
    """Run llama.cpp's own converter on a Hugging Face folder (its vendored gguf-py first)."""
    env = dict(os.environ, PYTHONPATH=str(tree / "gguf-py"), NO_LOCAL_GGUF="")
    env.pop("NO_LOCAL_GGUF")
    done = subprocess.run(
        [sys.executable, str(tree / "convert_hf_to_gguf.py"), str(folder),
         "--outfile", str(out), "--outtype", outtype],
        capture_output=True, text=True, timeout=600, env=env, cwd=tree,
    )
    if done.returncode != 0:
        raise RuntimeError(f"convert_hf_to_gguf.py failed:\n{done.stderr[-3000:]}")
    return out
