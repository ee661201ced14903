"""Fixtures for store tests: a tiny generated BERT folder, a fake network, a store that uses them."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakenet import FakeNet, tiny_cards
from tinybert import make_tiny_bert

from embedserve.store.local import ModelStore
from embedserve.store.registry import Registry


@pytest.fixture(scope="session")
def tiny_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert")


@pytest.fixture
def tiny_folder(tmp_path: Path, tiny_src: Path) -> Path:
    """A fresh, writable copy of the generated model folder."""
    import shutil

    return Path(shutil.copytree(tiny_src, tmp_path / "tiny-bert"))


@pytest.fixture
def net(tiny_src: Path) -> FakeNet:
    return FakeNet(tiny_src)


@pytest.fixture
def store(tmp_path: Path, net: FakeNet) -> ModelStore:
    return ModelStore(
        tmp_path / "home", registry=Registry(tiny_cards(net)), transport=net.transport()
    )
