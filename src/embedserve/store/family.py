"""Architecture families as data: how each one names its tensors, places its positions, and which
activation and biases its layers have. ``detect(config)`` reads ``config.json`` (the way
sentence-transformers lets ``modules.json`` decide pooling) and returns the family and the shape.

| family     | models                                        | positions                         | MLP           |
|------------|-----------------------------------------------|-----------------------------------|---------------|
| bert       | all-MiniLM, bge, mxbai-embed-large, arctic    | absolute table from 0             | GELU, biases  |
| roberta    | XLM-R: bge-m3, multilingual-e5, granite, ...  | absolute table from padding_idx+1 | GELU, biases  |
| mpnet      | all-mpnet-base-v2                             | table from padding_idx+1 + T5-style relative bias per head | GELU |
| nomic_bert | nomic-embed-text v1 / v1.5                    | rotary (rotate-half), no table    | SwiGLU, no biases |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from embedserve.errors import StoreError

# Per-layer tensors by role -> the family's own name (``{i}`` is the layer). A role a family lacks
# is absent; "qkv" means one fused [3 x hidden, hidden] projection instead of "q", "k", "v".
_BERT_LAYER = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "o": "attention.output.dense", "ln1": "attention.output.LayerNorm",
    "up": "intermediate.dense", "down": "output.dense", "ln2": "output.LayerNorm",
}
_MPNET_LAYER = {
    "q": "attention.attn.q", "k": "attention.attn.k", "v": "attention.attn.v",
    "o": "attention.attn.o", "ln1": "attention.LayerNorm",
    "up": "intermediate.dense", "down": "output.dense", "ln2": "output.LayerNorm",
}
_NOMIC_LAYER = {
    "qkv": "attn.Wqkv", "o": "attn.out_proj", "ln1": "norm1",
    "up": "mlp.fc11", "gate": "mlp.fc12", "down": "mlp.fc2", "ln2": "norm2",
}
_BERT_EMB = {
    "word": "embeddings.word_embeddings", "position": "embeddings.position_embeddings",
    "token_type": "embeddings.token_type_embeddings", "ln": "embeddings.LayerNorm",
}


@dataclass(frozen=True)
class Family:
    name: str
    layer_prefix: str  # "encoder.layer.{i}."
    layer: dict[str, str]  # role -> tensor name inside a layer
    embeddings: dict[str, str]  # role -> tensor name
    positions: str  # "absolute" | "relative_bias" | "rotary"
    mlp: str  # "gelu" | "swiglu"
    biases: bool  # linear layers carry biases
    relative_bias: str = ""  # tensor of the relative-position buckets [buckets, heads]


BERT = Family("bert", "encoder.layer.{i}.", _BERT_LAYER, _BERT_EMB, "absolute", "gelu", True)
ROBERTA = Family("roberta", "encoder.layer.{i}.", _BERT_LAYER, _BERT_EMB, "absolute", "gelu", True)
MPNET = Family("mpnet", "encoder.layer.{i}.", _MPNET_LAYER, _BERT_EMB, "relative_bias", "gelu", True,
               relative_bias="encoder.relative_attention_bias.weight")
NOMIC_BERT = Family(
    "nomic_bert", "encoder.layers.{i}.", _NOMIC_LAYER,
    {"word": "embeddings.word_embeddings", "token_type": "embeddings.token_type_embeddings",
     "ln": "emb_ln"},
    "rotary", "swiglu", False,
)
FAMILIES = {f.name: f for f in (BERT, ROBERTA, MPNET, NOMIC_BERT)}
# config.json model_type -> family (XLM-R and CamemBERT are RoBERTa with another vocabulary)
_MODEL_TYPES = {
    "bert": BERT, "roberta": ROBERTA, "xlm-roberta": ROBERTA, "camembert": ROBERTA,
    "mpnet": MPNET, "nomic_bert": NOMIC_BERT,
}
_ARCH_HINTS = (("NomicBert", NOMIC_BERT), ("XLMRoberta", ROBERTA), ("Roberta", ROBERTA),
               ("MPNet", MPNET), ("Bert", BERT))
# exact erf GELU, or the tanh approximation (ORT's FastGelu)
_ACTIVATIONS = {"gelu": "gelu", "gelu_python": "gelu", "gelu_new": "gelu_tanh",
                "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh", "swiglu": "swiglu"}


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    heads: int
    intermediate: int
    eps: float
    max_positions: int  # positions the model can take (its table less the offset)
    activation: str  # "gelu" | "gelu_tanh" | "swiglu"
    position_offset: int = 0  # first row of the position table a sequence uses
    rotary_base: float = 10000.0
    rotary_dim: int = 0  # rotated dimensions per head (rotary only)
    buckets: int = 32  # relative-position buckets (mpnet)
    max_distance: int = 128
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def family_name(config: dict[str, Any]) -> str | None:
    """The family of a ``config.json``, or None if no builder knows it."""
    fam = _MODEL_TYPES.get(str(config.get("model_type", "")))
    if fam is None:
        archs = [str(a) for a in config.get("architectures") or []]
        fam = next((f for hint, f in _ARCH_HINTS if any(hint in a for a in archs)), None)
    return fam.name if fam else None


def supported() -> str:
    return ", ".join(sorted(_MODEL_TYPES))


def detect(config: dict[str, Any]) -> tuple[Family, Shape]:
    """The family and shape of a ``config.json``; a clear StoreError for what no builder handles."""
    name = family_name(config)
    if name is None:
        raise StoreError(f"unsupported architecture {config.get('model_type')!r} "
                         f"(supported model types: {supported()})")
    fam = FAMILIES[name]
    try:
        shape = _nomic_shape(config) if fam is NOMIC_BERT else _bert_shape(config, fam)
    except KeyError as missing:
        raise StoreError(f"config.json lacks {missing}") from None
    if shape.hidden % shape.heads:
        raise StoreError("config.json: hidden_size is not a multiple of num_attention_heads")
    if shape.activation not in ("gelu", "gelu_tanh", "swiglu") or (
        (shape.activation == "swiglu") != (fam.mlp == "swiglu")
    ):
        raise StoreError(f"unsupported activation {config.get('hidden_act')!r} for {fam.name}")
    return fam, shape


def _bert_shape(config: dict[str, Any], fam: Family) -> Shape:
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise StoreError("only absolute position embeddings are supported")
    offset = 0
    if fam.name in ("roberta", "mpnet"):  # position ids run from padding_idx + 1
        offset = int(config.get("pad_token_id", 1)) + 1
    act = str(config.get("hidden_act", "gelu"))
    return Shape(
        layers=int(config["num_hidden_layers"]),
        hidden=int(config["hidden_size"]),
        heads=int(config["num_attention_heads"]),
        intermediate=int(config["intermediate_size"]),
        eps=float(config.get("layer_norm_eps", 1e-12)),
        max_positions=int(config.get("max_position_embeddings", 512)) - offset,
        activation=_ACTIVATIONS.get(act, act),
        position_offset=offset,
        buckets=int(config.get("relative_attention_num_buckets", 32)),
    )


def _nomic_shape(config: dict[str, Any]) -> Shape:
    """NomicBERT (contrastors' config keys): post-norm, rotary on all of each head, SwiGLU."""
    for key, want in (("prenorm", False), ("parallel_block", False), ("use_rms_norm", False),
                      ("rotary_emb_interleaved", False), ("causal", False)):
        if bool(config.get(key, want)) != want:
            raise StoreError(f"unsupported NomicBERT variant: {key}={config.get(key)!r}")
    positions = int(config.get("n_positions", 2048))
    if config.get("rotary_scaling_factor"):
        # dynamic NTK rescales the rotary base once a *padded batch* passes max_trained_positions
        # (so a text's vector would depend on its batch); up to there it is plain rotary: the
        # window stops at the trained positions
        positions = min(positions, int(config.get("max_trained_positions", 2048)))
    hidden = int(config["n_embd"])
    heads = int(config["n_head"])
    if float(config.get("rotary_emb_fraction", 1.0)) != 1.0:
        raise StoreError("unsupported NomicBERT variant: rotary_emb_fraction below 1")
    return Shape(
        layers=int(config["n_layer"]),
        hidden=hidden,
        heads=heads,
        intermediate=int(config.get("n_inner") or 4 * hidden),
        eps=float(config.get("layer_norm_epsilon", 1e-12)),
        max_positions=positions,
        activation=str(config.get("activation_function", "swiglu")),
        rotary_base=float(config.get("rotary_emb_base", 10000)),
        rotary_dim=hidden // heads,
    )
