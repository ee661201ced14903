"""The loader and Spearman reproduce the data README's STS-B number on the packaged dev split from sentence-transformers'
own vectors (the golden fixture), with no model and no torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedserve.eval.data import load_stsb, spearman

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "golden_all_minilm.npz"


def test_stsb_dev_spearman_of_the_reference_vectors_is_the_published_one() -> None:
    pairs = load_stsb("dev")  # the packaged split
    with np.load(FIXTURE) as z:
        index = {t: i for i, t in enumerate(z["sts_texts"].tolist())}
        vectors = z["sts_embeddings"].astype(np.float32)
    a = vectors[[index[s1] for s1, _, _ in pairs]]
    b = vectors[[index[s2] for _, s2, _ in pairs]]
    rho = spearman((a * b).sum(1), [gold for _, _, gold in pairs])
    assert round(rho, 4) == 0.8672
