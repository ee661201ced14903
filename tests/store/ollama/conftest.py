"""Fixtures for the Ollama import tests: a tiny BERT written as GGUF and laid out in an Ollama store."""

from __future__ import annotations

from pathlib import Path

import pytest
from ollamakit import ollama_layout, write_gguf
from tinybert import make_tiny_bert


@pytest.fixture(scope="session")
def tiny_gguf(tiny_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(tiny_src, tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf")


@pytest.fixture
def ollama_root(tmp_path: Path, tiny_gguf: Path) -> Path:
    """An Ollama store holding the tiny model as ``tiny-embed:latest``."""
    root = tmp_path / "ollama-models"
    ollama_layout(root, "tiny-embed:latest", tiny_gguf)
    return root


@pytest.fixture(scope="session")
def tiny64_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT whose widths are multiples of 32, so every matrix can be Q8_0 (32-wide blocks)."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny64") / "tiny64", hidden=64, intermediate=128,
                          seed=1)
