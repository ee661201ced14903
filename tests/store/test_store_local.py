"""The on-disk store: create, layout, list/rm/cp, cheap and full corruption checks."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from fakenet import blobs, leftovers, manifests, read_manifest

from embedserve.errors import (
    CorruptModel,
    InputFileError,
    InvalidInput,
    InvalidModelName,
    ModelNotFound,
)
from embedserve.store.local import ModelStore
from embedserve.store.progress import ProgressEvent


def test_create_from_folder_reads_the_folder_metadata(store: ModelStore, tiny_folder: Path) -> None:
    events: list[ProgressEvent] = []
    model = store.create("My-Model:v1", source=tiny_folder, progress=events.append)
    assert model.name == "my-model:v1"
    assert (model.dim, model.layers, model.max_tokens) == (48, 3, 32)
    assert (model.pooling, model.normalize, model.architecture) == ("mean", True, "bert")
    assert model.quantization == "fp32"
    assert model.card is None
    assert model.source == f"folder {tiny_folder.resolve()}"
    assert model.parameters > 0
    assert model.config["hidden_size"] == 48
    assert set(model.files) == {
        "1_Pooling/config.json",
        "config.json",
        "model.safetensors",
        "modules.json",
        "sentence_bert_config.json",
        "tokenizer.json",
    }
    assert model.id == model.digest[:12]
    assert [e.status for e in events][-2:] == ["writing manifest", "success"]
    # layout: blobs/sha256-<tree digest>/..., manifests/<model>/<tag>.json
    assert model.folder == store.home / "models" / "blobs" / model.blob
    assert model.blob.startswith("sha256-") and len(model.blob) == 7 + 64
    assert (store.home / "models" / "manifests" / "my-model" / "v1.json").is_file()
    data = read_manifest(store, "my-model:v1")
    assert data["digest"] == model.digest
    assert data["files"]["model.safetensors"]["sha256"] == model.digest
    assert data["quantization"] == "fp32"
    assert leftovers(store) == []
    store.verify(model)


def test_folder_metadata_is_the_truth(store: ModelStore, tmp_path: Path) -> None:
    from tinybert import make_tiny_bert

    folder = make_tiny_bert(tmp_path / "cls", pooling="cls", normalize=False, max_seq_length=20)
    model = store.create("cls-model", source=folder)
    assert (model.pooling, model.normalize, model.max_tokens) == ("cls", False, 20)


def test_create_int8_from_folder_and_from_installed_model(
    store: ModelStore, tiny_folder: Path
) -> None:
    base = store.create("base", source=tiny_folder)
    q = store.create("mini8", source="base", quantize="int8")
    assert q.quantization == "int8"
    assert q.folder == base.folder  # the blob is shared
    assert q.source == "model base:latest"
    q2 = store.create("direct8", source=str(tiny_folder), quantize="int8")
    assert q2.quantization == "int8"
    assert len(blobs(store)) == 1


def test_create_rejects_bad_quantization_and_missing_sources(
    store: ModelStore, tiny_folder: Path
) -> None:
    with pytest.raises(InvalidInput, match="unsupported quantization 'int4'"):
        store.create("x", source=tiny_folder, quantize="int4")
    with pytest.raises(InputFileError, match="no such folder"):
        store.create("x", source="./does/not/exist")
    with pytest.raises(ModelNotFound):
        store.create("x", source="not-installed-model")
    with pytest.raises(InvalidModelName):
        store.create("bad name", source=tiny_folder)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda f: (f / "tokenizer.json").unlink(), "tokenizer.json is missing"),
        (lambda f: (f / "modules.json").unlink(), "modules.json is missing"),
        (lambda f: (f / "1_Pooling" / "config.json").unlink(), "1_Pooling/config.json is missing"),
        (lambda f: (f / "config.json").write_text("{not json"), "config.json is not valid JSON"),
        (
            lambda f: _patch(
                f, "config.json", model_type="gpt2", architectures=["GPT2Model"]
            ),
            "model_type 'gpt2' is not supported (supported: bert, camembert, mpnet",
        ),
        (
            lambda f: (f / "model.safetensors").rename(f / "pytorch_model.bin"),
            "only model.safetensors weights are supported",
        ),
        (
            lambda f: (f / "modules.json").write_text(
                json.dumps(
                    json.loads((f / "modules.json").read_text())
                    + [
                        {
                            "idx": 3,
                            "name": "3",
                            "path": "3_Dense",
                            "type": "sentence_transformers.models.Dense",
                        }
                    ]
                )
            ),
            "module 'sentence_transformers.models.Dense' is not supported",
        ),
        (
            lambda f: _patch(f, "1_Pooling/config.json", pooling_mode_cls_token=True),
            "must select exactly one of",
        ),
    ],
)
def test_create_explains_what_is_wrong_with_a_folder(
    store: ModelStore, tiny_folder: Path, breakage, message
) -> None:
    breakage(tiny_folder)
    with pytest.raises(InputFileError) as info:
        store.create("x", source=tiny_folder)
    assert message in str(info.value)
    assert str(tiny_folder) in str(info.value)
    assert manifests(store) == [] and leftovers(store) == []


def _patch(folder: Path, rel: str, **changes: object) -> None:
    path = folder / rel
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_flipped_byte_is_found_by_verify_not_by_get(store: ModelStore) -> None:
    model = store.pull("tiny")  # a registry name: the hint is a re-pull
    weights = model.folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    same = store.get("tiny")  # cheap check: sizes only
    with pytest.raises(CorruptModel) as info:
        store.verify(same)
    msg = str(info.value)
    assert "model 'tiny:latest' is corrupt: sha256 mismatch for model.safetensors" in msg
    assert msg.endswith("re-pull it: embedserve pull tiny:latest")


def test_truncated_or_missing_file_is_found_by_get(store: ModelStore, tiny_folder: Path) -> None:
    model = store.create("mine", source=tiny_folder)
    with (model.folder / "tokenizer.json").open("ab") as f:
        f.write(b" ")
    with pytest.raises(CorruptModel, match="tokenizer.json is .* bytes, expected"):
        store.get("mine")
    (model.folder / "tokenizer.json").unlink()
    with pytest.raises(CorruptModel) as info:
        store.get("mine")
    assert "tokenizer.json is missing" in str(info.value)
    assert f"recreate it: embedserve create mine:latest --from {tiny_folder.resolve()}" in str(
        info.value
    )


def test_unreadable_manifest_is_corrupt(store: ModelStore, tiny_folder: Path) -> None:
    store.create("mine", source=tiny_folder)
    store.manifest_path("mine").write_text("{")
    with pytest.raises(CorruptModel, match="manifest .* is unreadable"):
        store.get("mine")
    assert store.list() == []


def test_list_rm_cp(store: ModelStore, tiny_folder: Path, tmp_path: Path) -> None:
    from tinybert import make_tiny_bert

    a = store.create("a", source=tiny_folder)
    time.sleep(0.01)
    b = store.create("b", source=make_tiny_bert(tmp_path / "b", seed=3))
    time.sleep(0.01)
    c = store.copy("A", "ns/copy-of-a:v2")
    assert c.name == "ns/copy-of-a:v2" and c.folder == a.folder
    assert (store.manifests_dir / "ns" / "copy-of-a" / "v2.json").is_file()
    assert [m.name for m in store.list()] == [
        "ns/copy-of-a:v2",
        "b:latest",
        "a:latest",
    ]  # newest first
    assert len(blobs(store)) == 2

    store.remove("a")  # the copy still holds the blob
    assert len(blobs(store)) == 2
    assert store.find("a") is None
    store.remove("ns/copy-of-a:v2")
    assert blobs(store) == [b.blob]
    assert not (store.manifests_dir / "ns").exists()  # empty folders go too
    with pytest.raises(ModelNotFound, match="model 'a:latest' is not installed"):
        store.remove("a")
    with pytest.raises(ModelNotFound, match="did you mean b:latest"):
        store.remove("bb")
    with pytest.raises(ModelNotFound):
        store.copy("nope", "x")


def test_get_unknown_name_suggests_installed_and_registry_names(
    store: ModelStore, tiny_folder: Path
) -> None:
    store.create("my-model", source=tiny_folder)
    with pytest.raises(ModelNotFound) as info:
        store.get("my-modle")
    assert "did you mean my-model:latest" in str(info.value)
    assert info.value.pull_command is None


def test_blob_of_a_live_pull_is_not_collected(store: ModelStore, tiny_folder: Path) -> None:
    model = store.create("a", source=tiny_folder)
    busy = store.tmp_dir / f"pull-{os.getpid()}-00000000"  # another pull in progress
    busy.mkdir()
    store.manifest_path("a").unlink()
    assert store.collect_garbage() == []
    busy.rmdir()
    assert store.collect_garbage() == [model.blob]
