"""Fixtures for CLI tests: a per-test EMBEDSERVE_HOME (set with monkeypatch, undone after each test)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tinybert import make_tiny_bert


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("EMBEDSERVE_HOME", str(path))
    monkeypatch.setenv("EMBEDSERVE_OFFLINE", "1")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("cli-tiny") / "tiny-bert")
