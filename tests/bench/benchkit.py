"""Helpers for the bench tests: a tiny evaluation data folder, fake engines on a fake clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

STSB_ROWS = [
    ("a cat sits on the mat", "a cat sits on the mat", 5.0),
    ("a cat sits on the mat", "a cat sits on a rug", 3.8),
    ("a dog runs in the park", "a dog walks in the park", 3.0),
    ("the market fell today", "a cat sleeps", 0.2),
    ("rain is expected tomorrow", "tomorrow it will rain", 4.5),
]

CISI_ALL = """.X
1 1 1
.I 1
.T
Cataloguing cats
.A
Someone
.W
How libraries catalogue cats
and other animals.
.I 2
.T
Dogs in archives
.W
Archival practice for dogs.
.I 3
.T
Fish
.W
Indexing fish literature.
"""
CISI_QRY = """.I 1
.W
catalogue cats in libraries
.I 2
.W
archival practice for dogs
.I 3
.W
an unjudged query
"""
CISI_REL = "1 1 0 0.0\n2 2 0 0.0\n"


def write_tiny_data(root: Path) -> Path:
    import csv

    (root / "stsb").mkdir(parents=True)
    with (root / "stsb" / "stsb-en-dev.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(STSB_ROWS)
    (root / "cisi").mkdir()
    (root / "cisi" / "CISI.ALL").write_text(CISI_ALL)
    (root / "cisi" / "CISI.QRY").write_text(CISI_QRY)
    (root / "cisi" / "CISI.REL").write_text(CISI_REL)
    return root


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ClockedEngine:
    """A bench engine that costs ``per_text`` fake seconds a text (and ``per_call`` a call) and
    logs what it ran, so interleaving and rates can be checked exactly."""

    def __init__(
        self,
        name: str,
        clock: FakeClock,
        per_text: float,
        log: list[str],
        *,
        kind: str = "fake",
        per_call: float = 0.0,
    ) -> None:
        self.name, self.kind, self.clock = name, kind, clock
        self.per_text, self.per_call, self.log = per_text, per_call, log

    def encode(self, texts: list[str]) -> Any:
        self.clock.now += self.per_call + self.per_text * len(texts)
        self.log.append(f"{self.name}:{len(texts)}")
        return np.zeros((len(texts), 4), dtype=np.float32)

    def encode_one(self, text: str) -> Any:
        self.clock.now += self.per_call + self.per_text
        return np.zeros(4, dtype=np.float32)

    def count_tokens(self, texts: list[str]) -> int:
        return sum(len(t.split()) + 2 for t in texts)
