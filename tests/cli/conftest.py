"""Fixtures for CLI tests (the per-test ``home`` is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tinybert import make_tiny_bert


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("cli-tiny") / "tiny-bert")
