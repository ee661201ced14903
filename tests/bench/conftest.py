"""Fixtures for the bench and eval CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchkit import write_tiny_data


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return write_tiny_data(tmp_path / "data")
