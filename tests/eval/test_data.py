"""Loaders for the packaged evaluation data (and folders of the same layout) and the nDCG /
Spearman helpers."""

from __future__ import annotations

import lzma
import math
from pathlib import Path

import numpy as np
import pytest

from embedserve.errors import InputFileError
from embedserve.eval.data import (
    PACKAGED_DATA,
    default_data_dir,
    load_cisi,
    load_stsb,
    mean_ndcg_at_k,
    ndcg_at_k,
    rankdata,
    spearman,
)

# the team's copy of the raw data, beside a development checkout (or a worktree's parent)
SHARED = next(
    (p / "shared" / "data" for p in Path(__file__).resolve().parents[3:] if (p / "shared" / "data").is_dir()),
    Path("/nonexistent"),
)


# -- metrics ------------------------------------------------------------------------------------


def test_rankdata_averages_ties() -> None:
    # values 10, 20, 20, 5, 20 -> sorted 5(1) 10(2) 20,20,20 (3,4,5 -> 4)
    assert rankdata([10, 20, 20, 5, 20]).tolist() == [2.0, 4.0, 4.0, 1.0, 4.0]
    assert rankdata([1.0, 1.0]).tolist() == [1.5, 1.5]
    assert rankdata([3, 2, 1]).tolist() == [3.0, 2.0, 1.0]


def test_spearman_with_ties_matches_hand_computation() -> None:
    x = [1, 2, 2, 3]  # ranks 1, 2.5, 2.5, 4
    y = [1, 3, 2, 4]  # ranks 1, 3, 2, 4
    # Pearson of the rank vectors, worked by hand: centred x = -1.5, 0, 0, 1.5;
    # centred y = -1.5, .5, -.5, 1.5 -> cov 4.5; |x| = sqrt(4.5), |y| = sqrt(5)
    assert spearman(x, y) == pytest.approx(4.5 / math.sqrt(4.5 * 5.0))


def test_spearman_perfect_and_inverse_and_constant() -> None:
    x = np.arange(10.0)
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert math.isnan(spearman(x, np.ones(10)))
    with pytest.raises(ValueError):
        spearman([1, 2], [1, 2, 3])


def test_ndcg_hand_worked_example() -> None:
    # relevant at ranks 1 and 3 of 3 relevant docs:
    # DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3) + 1/log2(4) = 2.1309...
    ranked = ["a", "x", "b", "y", "z"]
    got = ndcg_at_k(ranked, {"a", "b", "c"}, k=5)
    assert got == pytest.approx(1.5 / (1 + 1 / math.log2(3) + 0.5))
    assert got == pytest.approx(0.703918, abs=1e-6)


def test_ndcg_cutoff_and_edge_cases() -> None:
    assert ndcg_at_k(["x", "a"], {"a"}, k=1) == 0.0  # relevant doc falls past the cut
    assert ndcg_at_k(["a", "x"], {"a"}, k=1) == 1.0
    assert ndcg_at_k(["a"], set(), k=10) == 0.0
    # IDCG uses min(|relevant|, k): 20 relevant docs all in the top 10 is a perfect score
    rel = {str(i) for i in range(20)}
    assert ndcg_at_k([str(i) for i in range(10)], rel, k=10) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        ndcg_at_k(["a"], {"a"}, k=0)


def test_mean_ndcg_counts_unranked_judged_queries_as_zero() -> None:
    qrels = {"q1": {"a"}, "q2": {"b"}}
    assert mean_ndcg_at_k({"q1": ["a"]}, qrels) == pytest.approx(0.5)


# -- loaders on a tiny hand-made folder ----------------------------------------------------------


def test_loaders_on_a_small_folder(tmp_path: Path) -> None:
    (tmp_path / "stsb").mkdir()
    (tmp_path / "stsb" / "stsb-en-dev.csv").write_text(
        'A cat.,"A dog, barking.",1.5\n"He said ""hi"".",Hi.,4\n', encoding="utf-8"
    )
    (tmp_path / "cisi").mkdir()
    (tmp_path / "cisi" / "CISI.ALL").write_text(
        ".X\n.I 1\n.T\nTitle  one\n.A\nDoe, J.\n.W\n   Body\nof   one.\n.X\n1\t5\t1\n"
        ".I 2\n.T \nTwo\n.W\nText two.\n.B\n(ref)\n",
        encoding="utf-8",
    )
    (tmp_path / "cisi" / "CISI.QRY").write_text(
        ".I 1\n.W\nWhat is\n  one?\n.I 2\n.T\nT\n.A\nA\n.W\nTwo?\n.B\nB\n", encoding="utf-8"
    )
    (tmp_path / "cisi" / "CISI.REL").write_text(
        "     1     1\t0\t0.000000\n     1     2\t0\t0.000000\n", encoding="utf-8"
    )
    assert load_stsb("dev", tmp_path) == [
        ("A cat.", "A dog, barking.", 1.5),
        ('He said "hi".', "Hi.", 4.0),
    ]
    docs, queries, qrels = load_cisi(tmp_path)
    assert docs == {"1": "Title one Body of one.", "2": "Two Text two."}
    assert queries == {"1": "What is one?", "2": "Two?"}
    assert qrels == {"1": {"1", "2"}}


def test_missing_folder_and_file_raise_input_file_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError):
        default_data_dir(tmp_path / "nope")
    with pytest.raises(InputFileError):
        load_stsb("dev", tmp_path)


# -- the packaged data ---------------------------------------------------------------------------


def test_packaged_data_is_the_default_and_needs_no_checkout() -> None:
    assert default_data_dir() == PACKAGED_DATA
    names = sorted(p.relative_to(PACKAGED_DATA).as_posix() for p in PACKAGED_DATA.rglob("*.xz"))
    assert names == [
        "cisi/CISI.ALL.xz",
        "cisi/CISI.QRY.xz",
        "cisi/CISI.REL.xz",
        "stsb/stsb-en-dev.csv.xz",
    ]
    licences = (PACKAGED_DATA / "README.md").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in licences and "Glasgow" in licences


def test_packaged_files_are_the_shared_files_byte_for_byte() -> None:
    if not SHARED.is_dir():
        pytest.skip("no ../shared/data beside this checkout to compare with")
    for packed in PACKAGED_DATA.rglob("*.xz"):
        rel = packed.relative_to(PACKAGED_DATA).with_suffix("")
        assert lzma.decompress(packed.read_bytes()) == (SHARED / rel).read_bytes(), rel


def test_xz_sibling_is_read_and_bad_xz_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "stsb").mkdir()
    body = "A cat.,A dog.,1.5\n"
    (tmp_path / "stsb" / "stsb-en-dev.csv.xz").write_bytes(lzma.compress(body.encode()))
    assert load_stsb("dev", tmp_path) == [("A cat.", "A dog.", 1.5)]
    (tmp_path / "stsb" / "stsb-en-dev.csv.xz").write_bytes(b"not xz")
    with pytest.raises(InputFileError, match="not valid xz data"):
        load_stsb("dev", tmp_path)


def test_stsb_counts_on_packaged_data() -> None:
    dev = load_stsb("dev")
    assert len(dev) == 1500
    assert dev[0] == (
        "A man with a hard hat is dancing.",
        "A man wearing a hard hat is dancing.",
        5.0,
    )
    assert all(0.0 <= s <= 5.0 for _, _, s in dev)
    if SHARED.is_dir():  # the train split is not packaged (fine-tuning data is the user's)
        assert len(load_stsb("train", SHARED)) == 5749


def test_cisi_counts_on_packaged_data() -> None:
    docs, queries, qrels = load_cisi()
    assert len(docs) == 1460
    assert len(queries) == 112
    assert len(qrels) == 76
    assert set(qrels) <= set(queries)
    assert all(d in docs for rel in qrels.values() for d in rel)
    assert docs["1"].startswith(
        "18 Editions of the Dewey Decimal Classifications The present study"
    )
    assert all(d and "  " not in d and "\n" not in d for d in docs.values())
    assert queries["3"] == "What is information science? Give definitions where possible."
