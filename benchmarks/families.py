"""Fidelity of every architecture family to its reference, and MPNet's speed vs sentence-transformers.

    .venv/bin/python benchmarks/families.py [--mpnet FOLDER] [--data DIR] [--json out.json]

Texts: the unique STS-B dev sentences (``--data``, default ../shared/data) plus 40 texts past
each model's window. Tiny random-weight models of each family (tests/tinyfamilies.py) against
sentence-transformers (BERT CLS, RoBERTa, XLM-R, MPNet) or the numpy NomicBERT forward
(tests/engine/numpy_nomic.py); ``--mpnet``: the real all-mpnet-base-v2 folder (the PyPI parts,
joined) against sentence-transformers, fidelity and texts/s over the same texts in one run
(batch 32, each pass timed ``--repeats`` times, best kept: the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "engine")]

import numpy as np  # noqa: E402

from embedserve.config import Settings  # noqa: E402
from embedserve.embedder import Embedder  # noqa: E402
from embedserve.eval.data import load_stsb  # noqa: E402
from embedserve.store.local import ModelStore  # noqa: E402


def texts_for(data: Path | None, limit: int = 0) -> list[str]:
    rows = load_stsb("dev", data)
    short = sorted({t for a, b, _ in rows for t in (a, b)})
    short = short[:: max(1, len(short) // limit)][:limit] if limit else short
    long = [" ".join(short[(i * 7) % len(short) :][:40]) for i in range(40)]  # ~500+ tokens each
    return short + long


def _install(folder: Path, home: Path) -> Embedder:
    ModelStore(home).create("m:latest", source=folder)
    return Embedder("m:latest", settings=Settings(home=home, offline=True, cache_mb=0))  # no cache: speed is compute


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def _summary(cos: np.ndarray, n_long: int) -> dict[str, float]:
    return {"min": float(cos.min()), "mean": float(cos.mean()),
            "min_past_window": float(cos[-n_long:].min()), "texts": int(len(cos))}


def tiny_fidelity(texts: list[str], only: set[str]) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    import numpy_nomic
    from tinyfamilies import make_hf_model, make_nomic

    out: dict[str, Any] = {}
    cases = [("bert-cls", "bert", "cls"), ("roberta", "roberta", "mean"),
             ("xlm-roberta", "xlm-roberta", "mean"), ("mpnet", "mpnet", "mean")]
    for label, family, pooling in cases:
        if only and label not in only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            folder = make_hf_model(Path(tmp) / "src", family, layers=4, hidden=64, heads=4,
                                   max_seq_length=128, pooling=pooling)
            ours = _install(folder, Path(tmp) / "home").encode(texts)
            ref = SentenceTransformer(str(folder), device="cpu").encode(texts, batch_size=32)
            out[label] = {**_summary(_cos(ours, ref), 40), "reference": "sentence-transformers"}
            print(label, out[label], flush=True)
    if only and "nomic_bert" not in only:
        return out
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_nomic(Path(tmp) / "src", layers=4, hidden=64, heads=4, intermediate=128,
                            max_seq_length=128)
        emb = _install(folder, Path(tmp) / "home")
        ours = emb.encode(texts, normalize=False)
        ids = emb.engine.tokenize(texts)
        ref = np.stack([numpy_nomic.forward(folder, seq) for seq in ids])
        out["nomic_bert"] = {**_summary(_cos(ours, ref), 40), "reference": "numpy forward"}
        print("nomic_bert", out["nomic_bert"], flush=True)
    return out


def mpnet(folder: Path, texts: list[str], repeats: int, speed_texts: int) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    with tempfile.TemporaryDirectory() as tmp:
        emb = _install(folder, Path(tmp) / "home")
        st = SentenceTransformer(str(folder), device="cpu")
        ours = emb.encode(texts, batch_size=32)
        ref = st.encode(texts, batch_size=32, normalize_embeddings=True)
        result: dict[str, Any] = {"fidelity": _summary(_cos(ours, ref), 40)}
        print("mpnet real", result, flush=True)
        short = texts[:-40][:speed_texts]
        times: dict[str, list[float]] = {"embedserve": [], "sentence_transformers": []}
        for _ in range(repeats):  # interleaved, same texts, same minute
            t0 = time.perf_counter()
            emb.encode(short, batch_size=32)
            times["embedserve"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            st.encode(short, batch_size=32)
            times["sentence_transformers"].append(time.perf_counter() - t0)
        rate = {k: len(short) / min(v) for k, v in times.items()}
        result["texts_per_s"] = rate
        result["ratio"] = rate["embedserve"] / rate["sentence_transformers"]
        print("mpnet speed", rate, result["ratio"], flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mpnet", type=Path)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-tiny", action="store_true")
    ap.add_argument("--only", nargs="*", default=[], help="tiny families to run (default: all)")
    ap.add_argument("--speed-texts", type=int, default=1000, help="STS-B texts in the speed runs")
    ap.add_argument("--texts", type=int, default=0, help="STS-B texts to use (default: all)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    texts = texts_for(args.data, args.texts)
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "texts": len(texts)}
    if not args.skip_tiny:
        report["tiny"] = tiny_fidelity(texts, set(args.only))
    if args.mpnet:
        report["mpnet"] = mpnet(args.mpnet, texts, args.repeats, args.speed_texts)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
