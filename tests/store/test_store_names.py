from __future__ import annotations

import pytest

from embedserve.errors import InvalidModelName
from embedserve.store.names import canonical, is_valid, parse_name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("all-minilm", "all-minilm:latest"),
        ("All-MiniLM", "all-minilm:latest"),
        ("all-minilm:22M", "all-minilm:22m"),
        ("all-minilm:l6-v2", "all-minilm:l6-v2"),
        ("  all-minilm:latest ", "all-minilm:latest"),
        ("ns/model", "ns/model:latest"),
        ("ns/model:v1.5", "ns/model:v1.5"),
        ("registry.example.com:5000/ns/model", "registry.example.com:5000/ns/model:latest"),
        ("registry.example.com:5000/ns/model:tag_1", "registry.example.com:5000/ns/model:tag_1"),
        ("_private:x", "_private:x"),
        ("m.v2", "m.v2:latest"),
    ],
)
def test_valid_names_are_canonicalised(raw: str, expected: str) -> None:
    assert canonical(raw) == expected


def test_tag_splits_at_last_colon_after_last_slash() -> None:
    parsed = parse_name("host:8080/ns/model")
    assert parsed.tag == "latest"
    assert parsed.path == ("host:8080", "ns", "model")
    assert parse_name("a:b").tag == "b"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "-model",
        ".hidden",
        "model:",
        "model:-tag",
        "a//b",
        "/abs",
        "a/b/c/d",
        "mo del",
        "model:ta g",
        "m\u00e9",
        "../etc",
        "model:..",
        "x" * 81,
        "model:" + "t" * 81,
    ],
)
def test_invalid_names_raise(raw: str) -> None:
    with pytest.raises(InvalidModelName) as info:
        parse_name(raw)
    assert "invalid model name" in str(info.value)
    assert "\n" not in str(info.value)
    assert not is_valid(raw)


def test_matching_is_case_insensitive() -> None:
    assert canonical("ALL-MINILM:LATEST") == canonical("all-minilm")


def test_an_invalid_name_raises_every_time_despite_the_memo() -> None:
    for _ in range(3):
        assert canonical("All-MiniLM") == "all-minilm:latest"
        with pytest.raises(InvalidModelName):
            canonical("bad name!")
    with pytest.raises(InvalidModelName, match="must be a string"):
        canonical(["not", "a", "str"])  # type: ignore[arg-type]  # unhashable: never memoised
