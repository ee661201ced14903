"""NomicBERT (rotary, SwiGLU, no biases) built from weights equals an independent numpy forward.

The folder carries nomic-embed-text's config keys and tensor names (tests/tinyfamilies.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import numpy_nomic
from embedserve.config import Settings
from embedserve.embedder import Embedder
from embedserve.errors import InputFileError
from embedserve.store.local import ModelStore
from tinyfamilies import CORPUS, make_nomic

TEXTS = CORPUS + ["a", "the sky is blue " * 30]


@pytest.fixture(scope="module")
def nomic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Embedder]:
    root = tmp_path_factory.mktemp("nomic")
    folder = make_nomic(root / "src", layers=3, hidden=48, heads=4, intermediate=80)
    ModelStore(root / "home").create("nomic-tiny", source=folder)
    return folder, Embedder("nomic-tiny", settings=Settings(home=root / "home", offline=True))


def test_nomic_graph_matches_numpy_forward(nomic: tuple[Path, Embedder]) -> None:
    folder, emb = nomic
    assert emb.info.max_tokens == 64 and emb.info.dim == 48
    ids = emb.engine.tokenize(TEXTS)
    assert max(len(x) for x in ids) == 64 and len({len(x) for x in ids}) > 3
    got = emb.encode(TEXTS, normalize=False, batch_size=4)
    for row, seq in zip(got, ids):
        ref = numpy_nomic.forward(folder, seq)
        cos = float(row @ ref / np.linalg.norm(row) / np.linalg.norm(ref))
        assert cos >= 0.99999, cos
        np.testing.assert_allclose(row, ref, rtol=1e-3, atol=1e-4)


def test_nomic_matryoshka_dimensions_truncate_and_renormalise(nomic: tuple[Path, Embedder]) -> None:
    _, emb = nomic
    full = emb.encode(TEXTS[:4])
    short = emb.encode(TEXTS[:4], dimensions=16)
    want = full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True)
    np.testing.assert_allclose(short, want, atol=1e-6)


def test_nomic_int8_stays_close(tmp_path: Path, nomic: tuple[Path, Embedder]) -> None:
    folder, exact = nomic
    ModelStore(tmp_path).create("nomic-q", source=folder, quantize="int8")
    q = Embedder("nomic-q", settings=Settings(home=tmp_path, offline=True))
    cos = (q.encode(TEXTS) * exact.encode(TEXTS)).sum(1)
    assert cos.min() > 0.98, cos.min()


def test_dynamic_ntk_scaling_keeps_the_window_at_the_trained_positions(tmp_path: Path) -> None:
    from embedserve.store.folder import inspect_folder

    folder = make_nomic(tmp_path / "src", max_seq_length=4096)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(rotary_scaling_factor=2.0, max_trained_positions=2048)
    (folder / "config.json").write_text(json.dumps(cfg))
    assert inspect_folder(folder).max_tokens == 2048  # beyond it the rotation depends on the batch


@pytest.mark.parametrize("key,value,message", [
    ("prenorm", True, "prenorm=True"),
    ("rotary_emb_fraction", 0.5, "rotary_emb_fraction below 1"),
    ("parallel_block", True, "parallel_block=True"),
])
def test_unsupported_nomic_variants_are_named(tmp_path: Path, key: str, value: object,
                                              message: str) -> None:
    folder = make_nomic(tmp_path / "src")
    cfg = json.loads((folder / "config.json").read_text())
    cfg[key] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputFileError, match=message):
        ModelStore(tmp_path / "home").create("x", source=folder)


def test_pull_from_a_folder_is_checked_against_the_card(tmp_path: Path) -> None:
    from embedserve.errors import PullError

    folder = make_nomic(tmp_path / "src")
    with pytest.raises(PullError, match="this folder holds a 2-layer 32-d nomic_bert model, "
                                        "not nomic-ai/nomic-embed-text-v1.5"):
        ModelStore(tmp_path / "home").pull("nomic-embed-text", from_dir=folder)
