"""Model folders beyond sentence-transformers embedders: ColBERT checkpoints and cross-encoders.

The folder's own files decide the kind, as ``modules.json`` decides pooling for an embedder:

* **colbert** — a colbert-ai checkpoint (the colbert-ir/colbertv2.0 layout): ``config.json`` (a BERT,
  ``architectures: ["HF_ColBERT"]``), ``artifact.metadata`` (JSON: ``query_token_id`` /
  ``doc_token_id`` markers, ``query_maxlen``, ``doc_maxlen``, ``attend_to_mask_tokens``,
  ``mask_punctuation``), ``model.safetensors`` with ``bert.*`` and the projection ``linear.weight``
  (``[dim, hidden]``, no bias), ``tokenizer.json``.
* **reranker** — a sentence-transformers ``CrossEncoder`` folder (the ms-marco-MiniLM layout):
  ``config.json`` with ``BertForSequenceClassification`` and one label, ``model.safetensors`` with
  ``bert.*``, ``bert.pooler.dense.*`` and ``classifier.*``, ``tokenizer.json``. Its window is the
  tokenizer's ``model_max_length`` (capped at the position table), its score activation
  ``config.json``'s ``sentence_transformers.activation_fn`` (sigmoid when absent, as
  sentence-transformers does for one label).

Everything else is left to :func:`embedserve.store.folder.inspect_folder` (embedders).
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedserve.errors import InputFileError
from embedserve.store.files import safetensors_header

COLBERT_METADATA = "artifact.metadata"
OPTIONAL = ("tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "README.md")
_ACTIVATIONS = {
    "torch.nn.modules.linear.Identity": "identity",
    "torch.nn.modules.activation.Sigmoid": "sigmoid",
}


@dataclass(frozen=True)
class ColbertSpec:
    """How a ColBERT checkpoint tokenises and which token vectors it keeps."""

    query_marker: str = "[unused0]"
    doc_marker: str = "[unused1]"
    query_maxlen: int = 32
    doc_maxlen: int = 180
    attend_to_mask_tokens: bool = False
    mask_punctuation: bool = True

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> ColbertSpec:
        return cls(
            query_marker=str(meta.get("query_token_id", "[unused0]")),
            doc_marker=str(meta.get("doc_token_id", "[unused1]")),
            query_maxlen=int(meta.get("query_maxlen", 32)),
            doc_maxlen=int(meta.get("doc_maxlen", 180)),
            attend_to_mask_tokens=bool(meta.get("attend_to_mask_tokens", False)),
            mask_punctuation=bool(meta.get("mask_punctuation", True)),
        )

    @staticmethod
    def punctuation() -> tuple[str, ...]:
        return tuple(string.punctuation)


def _bad(folder: Path, kind: str, why: str) -> InputFileError:
    return InputFileError(f"{folder} is not a usable {kind} folder: {why}")


def _json(folder: Path, rel: str, kind: str) -> Any:
    try:
        return json.loads((folder / rel).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _bad(folder, kind, f"{rel} is missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _bad(folder, kind, f"{rel} is not valid JSON ({err})") from None


def kind_of(folder: Path, config: dict[str, Any]) -> str:
    """``"colbert"``, ``"reranker"`` or ``"embedding"`` from the folder's own files."""
    archs = [str(a) for a in config.get("architectures") or []]
    if (folder / COLBERT_METADATA).is_file() or "HF_ColBERT" in archs:
        return "colbert"
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "reranker"
    return "embedding"


def labels_of(config: dict[str, Any]) -> int:
    if config.get("id2label"):
        return len(config["id2label"])
    return int(config.get("num_labels", 1) or 1)


def activation_of(config: dict[str, Any]) -> str:
    """The score activation sentence-transformers' CrossEncoder applies: identity or sigmoid."""
    st = config.get("sentence_transformers") or {}
    name = st.get("activation_fn") if isinstance(st, dict) else None
    if name is None:
        return "sigmoid" if labels_of(config) == 1 else "identity"
    if name not in _ACTIVATIONS:
        raise InputFileError(f"unsupported cross-encoder activation {name!r}")
    return _ACTIVATIONS[name]


def colbert_spec(folder: Path) -> ColbertSpec:
    if not (folder / COLBERT_METADATA).is_file():
        return ColbertSpec()
    meta = _json(folder, COLBERT_METADATA, "ColBERT")
    if not isinstance(meta, dict):
        raise _bad(folder, "ColBERT", f"{COLBERT_METADATA} is not a JSON object")
    return ColbertSpec.from_metadata(meta)


def reranker_window(folder: Path, config: dict[str, Any]) -> int:
    positions = int(config.get("max_position_embeddings", 512))
    for rel, key in (("sentence_bert_config.json", "max_seq_length"),
                     ("tokenizer_config.json", "model_max_length")):
        if (folder / rel).is_file():
            value = (_json(folder, rel, "cross-encoder") or {}).get(key)
            if isinstance(value, int) and value > 0:
                return min(value, positions)
    return positions


def heads_of(kind: str) -> tuple[str, ...]:
    """The graph heads (:data:`embedserve.store.graph.heads.HEADS`) a kind of folder gets."""
    return {"colbert": ("colbert",), "reranker": ("scores",)}.get(kind, ("pooled", "tokens"))


def inspect_special(folder: Path, config: dict[str, Any], kind: str) -> dict[str, Any]:
    """Check a colbert / reranker folder; the FolderInfo fields that differ from an embedder's."""
    label = "ColBERT" if kind == "colbert" else "cross-encoder"
    for rel in ("config.json", "tokenizer.json", "model.safetensors"):
        if not (folder / rel).is_file():
            if rel == "model.safetensors" and (folder / "pytorch_model.bin").is_file():
                raise _bad(folder, label, "only model.safetensors weights are supported, found pytorch_model.bin")
            raise _bad(folder, label, f"{rel} is missing")
    if config.get("model_type", "bert") != "bert":
        raise _bad(folder, label, f"model_type {config.get('model_type')!r} is not BERT")
    hidden = int(config.get("hidden_size", 0))
    positions = int(config.get("max_position_embeddings", 512))
    files = ["config.json", "tokenizer.json", "model.safetensors"]
    files += [rel for rel in OPTIONAL if (folder / rel).is_file() and rel != "README.md"]
    if kind == "colbert":
        spec = colbert_spec(folder)
        if (folder / COLBERT_METADATA).is_file():
            files.append(COLBERT_METADATA)
        dim = _projection_dim(folder, label)
        return {"dim": dim, "max_tokens": min(max(spec.doc_maxlen, spec.query_maxlen), positions),
                "pooling": "none", "normalize": True, "files": files}
    labels = labels_of(config)
    if labels != 1:
        raise _bad(folder, label, f"it has {labels} labels; only one-logit rerankers are supported")
    activation_of(config)  # refuses an activation it cannot reproduce
    if (folder / "sentence_bert_config.json").is_file():
        files.append("sentence_bert_config.json")
    return {"dim": labels, "max_tokens": reranker_window(folder, config), "pooling": "none",
            "normalize": False, "files": files, "hidden": hidden}


def _projection_dim(folder: Path, label: str) -> int:
    header = safetensors_header(folder / "model.safetensors")
    entry = header.get("linear.weight")
    if not isinstance(entry, dict) or len(entry.get("shape", ())) != 2:
        raise _bad(folder, label, "model.safetensors has no linear.weight projection")
    return int(entry["shape"][0])
