"""Reading and checking a sentence-transformers model folder (the families in store.family).

The folder's own metadata is the truth: ``modules.json`` names the pooling module (and whether a
``Normalize`` module ends the pipeline), ``<pooling>/config.json`` says how to pool,
``sentence_bert_config.json``'s ``max_seq_length`` is the window, ``config.json`` the architecture,
``config_sentence_transformers.json`` the prompts (``prompts``, ``default_prompt_name``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedserve.errors import InputFileError, StoreError
from embedserve.store.family import detect, family_name, supported
from embedserve.store.files import count_parameters
from embedserve.store.kinds import inspect_special, kind_of

# Files copied into the store; others (README, ONNX exports, pytorch_model.bin...) are left behind.
REQUIRED_FILES = ("config.json", "tokenizer.json", "modules.json", "model.safetensors")
OPTIONAL_FILES = (
    "sentence_bert_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "config_sentence_transformers.json",
)
WEIGHTS = "model.safetensors"
_POOLING_KEYS = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
)
_SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")


@dataclass(frozen=True)
class FolderInfo:
    architecture: str  # a family: "bert" | "roberta" | "mpnet" | "nomic_bert"
    layers: int
    dim: int
    max_tokens: int
    pooling: str
    normalize: bool
    parameters: int
    files: tuple[str, ...]  # relative paths to copy, weights included
    config: dict[str, Any] = field(default_factory=dict, compare=False)
    license: str | None = None
    prompts: dict[str, str] = field(default_factory=dict, compare=False)  # name -> prefix
    default_prompt_name: str | None = None
    kind: str = "embedding"  # "embedding" | "colbert" | "reranker" (embedserve.store.kinds)


def _bad(folder: Path, why: str) -> InputFileError:
    return InputFileError(f"{folder} is not a usable sentence-transformers folder: {why}")


def _read_json(folder: Path, rel: str) -> Any:
    path = folder / rel
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _bad(folder, f"{rel} is missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _bad(folder, f"{rel} is not valid JSON ({err})") from None


def _license(folder: Path) -> str | None:
    readme = folder / "README.md"
    try:
        text = readme.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if not text.startswith("---"):
        return None
    for line in text.split("\n", 60)[1:60]:
        if line.strip() == "---":
            break
        if line.startswith("license:"):
            return line.split(":", 1)[1].strip().strip("'\"") or None
    return None


def inspect_folder(folder: Path) -> FolderInfo:
    """Check ``folder`` holds a sentence-transformers model of a known family; say clearly what is wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"{folder}: no such folder")

    config = _read_json(folder, "config.json") if (folder / "config.json").is_file() else {}
    model_kind = kind_of(folder, config) if isinstance(config, dict) else "embedding"
    for rel in REQUIRED_FILES if model_kind == "embedding" else ():
        if not (folder / rel).is_file():
            if rel == WEIGHTS and (folder / "pytorch_model.bin").is_file():
                raise _bad(
                    folder, "only model.safetensors weights are supported, found pytorch_model.bin"
                )
            raise _bad(folder, f"{rel} is missing")
    if not isinstance(config, dict):
        raise _bad(folder, "config.json is not a JSON object")
    if model_kind != "embedding":  # a ColBERT checkpoint or a cross-encoder: no modules.json
        special = inspect_special(folder, config, model_kind)
        return FolderInfo(
            architecture="bert", layers=int(config.get("num_hidden_layers", 0)),
            dim=special["dim"], max_tokens=special["max_tokens"], pooling=special["pooling"],
            normalize=special["normalize"], parameters=count_parameters(folder / WEIGHTS),
            files=tuple(sorted(special["files"])), config=config, license=_license(folder),
            kind=model_kind,
        )
    model_type = str(config.get("model_type", ""))
    family = family_name(config)
    if family is None:
        raise _bad(
            folder, f"model_type {model_type or '?'!r} is not supported (supported: {supported()})"
        )
    try:
        _, shape = detect(config)
    except StoreError as err:
        raise _bad(folder, str(err)) from None
    modules = _read_json(folder, "modules.json")
    if not isinstance(modules, list):
        raise _bad(folder, "modules.json is not a list")
    pooling_path: str | None = None
    normalize = False
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind not in _SUPPORTED_MODULES:
            raise _bad(
                folder,
                f"module {module.get('type')!r} is not supported (only Transformer, Pooling, Normalize)",
            )
        if kind == "Pooling":
            pooling_path = str(module.get("path", "")).strip("/")
        elif kind == "Normalize":
            normalize = True
    if pooling_path is None:
        raise _bad(folder, "modules.json has no Pooling module")
    pooling_rel = f"{pooling_path}/config.json" if pooling_path else "config.json"
    if pooling_rel == "config.json":
        raise _bad(folder, "the Pooling module needs its own folder (e.g. 1_Pooling)")
    pool_cfg = _read_json(folder, pooling_rel)
    if isinstance(pool_cfg.get("pooling_mode"), str):
        modes = [pool_cfg["pooling_mode"].replace("lasttoken", "last")]
    else:
        modes = [name for key, name in _POOLING_KEYS if pool_cfg.get(key)]
    if len(modes) != 1 or modes[0] not in {n for _, n in _POOLING_KEYS}:
        raise _bad(
            folder,
            f"{pooling_rel} must select exactly one of cls, mean, max, mean_sqrt_len pooling",
        )
    if pool_cfg.get("include_prompt") is False:
        raise _bad(folder, f"{pooling_rel}: include_prompt=false (pooling that leaves out the "
                           "prompt's tokens) is not supported")
    hidden = shape.hidden
    dim = int(pool_cfg.get("word_embedding_dimension") or hidden)
    if hidden and dim != hidden:
        raise _bad(folder, f"pooling dimension {dim} differs from hidden_size {hidden}")
    positions = shape.max_positions  # the position table less its offset (RoBERTa: 514 - 2)
    max_tokens = positions
    st_cfg: dict[str, Any] = {}
    if (folder / "sentence_bert_config.json").is_file():
        st_cfg = _read_json(folder, "sentence_bert_config.json") or {}
    if st_cfg.get("max_seq_length"):
        max_tokens = min(int(st_cfg["max_seq_length"]), positions)
    elif (folder / "tokenizer_config.json").is_file():
        tk = _read_json(folder, "tokenizer_config.json") or {}
        if isinstance(tk.get("model_max_length"), int):
            max_tokens = min(tk["model_max_length"], positions)
    try:
        json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _bad(folder, "tokenizer.json is not valid JSON") from None
    prompts, default_prompt = _prompts(folder)
    files = list(REQUIRED_FILES) + [pooling_rel]
    files += [rel for rel in OPTIONAL_FILES if (folder / rel).is_file()]
    return FolderInfo(
        architecture=family,
        layers=shape.layers,
        dim=dim,
        max_tokens=max_tokens,
        pooling=modes[0],
        normalize=normalize,
        parameters=count_parameters(folder / WEIGHTS),
        files=tuple(sorted(files)),
        config=config,
        license=_license(folder),
        prompts=prompts,
        default_prompt_name=default_prompt,
    )


def _prompts(folder: Path) -> tuple[dict[str, str], str | None]:
    """sentence-transformers' ``prompts`` and ``default_prompt_name`` (e5: ``query: ``)."""
    rel = "config_sentence_transformers.json"
    if not (folder / rel).is_file():
        return {}, None
    cfg = _read_json(folder, rel)
    raw = cfg.get("prompts") if isinstance(cfg, dict) else None
    prompts = raw or {}
    if not isinstance(prompts, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()
    ):
        raise _bad(folder, f"{rel}: prompts must map names to strings")
    default = cfg.get("default_prompt_name")
    if default is not None and default not in prompts:
        raise _bad(folder, f"{rel}: default_prompt_name {default!r} is not one of its prompts")
    return dict(prompts), default
