"""Fine-tuning measurements for BENCHMARKS.md, through the real CLI (subprocesses).

* ``stsb``: ``finetune all-minilm --train stsb-en-train.csv --loss cosine --epochs E`` for each E,
  then ``eval -m all-minilm -m NEW`` on the packaged STS-B dev and CISI: wall time, Spearman and
  nDCG@10 before and after (scored by embedserve's ONNX engine on the installed models).
* ``mnrl``: CISI's judged queries split in two halves by a seeded shuffle (by query), written as
  one BEIR folder with ``qrels/train.tsv`` and ``qrels/test.tsv``; ``finetune --loss mnrl
  --train DIR:train --eval DIR:test`` (optionally on the first N training pairs).

Usage: python benchmarks/finetune.py --data ../shared/data --home /tmp/h stsb --epochs 1 2
       python benchmarks/finetune.py --data ../shared/data --home /tmp/h mnrl --max-pairs 256
Each run appends one JSON line to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path


def cli(home: Path, *args: str) -> tuple[float, str]:
    env = dict(os.environ, EMBEDSERVE_HOME=str(home))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "embedserve", *args], env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - t0
    sys.stderr.write(proc.stderr[-3000:])
    if proc.returncode != 0:
        raise SystemExit(f"embedserve {' '.join(args)} failed ({proc.returncode})")
    return seconds, proc.stdout


def stsb(args: argparse.Namespace) -> None:
    train = args.data / "stsb" / "stsb-en-train.csv"
    for epochs in args.epochs:
        name = f"stsb-ft-e{epochs}-s{args.seed}"
        cli(args.home, "rm", name) if (args.home / "models/manifests" / name).exists() else None
        seconds, out = cli(
            args.home, "finetune", "all-minilm", "--train", str(train), "--name", name,
            "--loss", "cosine", "--epochs", str(epochs), "--batch-size", str(args.batch_size),
            "--lr", str(args.lr), "--seed", str(args.seed), "--threads", str(args.threads),
        )
        _, report = cli(args.home, "eval", "-m", "all-minilm", "-m", name, "--json")
        ev = json.loads(report)
        row = {
            "run": "stsb-cosine", "epochs": epochs, "batch_size": args.batch_size, "lr": args.lr,
            "seed": args.seed, "threads": args.threads, "finetune_wall_s": round(seconds, 1),
            "before": ev["models"][0]["scores"], "after": ev["models"][1]["scores"],
            "delta": ev["comparisons"][0]["deltas"], "finetune_stdout": out.strip(),
        }
        _append(args.out, row)


def mnrl(args: argparse.Namespace) -> None:
    from embedserve.eval.data import load_cisi

    docs, queries, rel = load_cisi(args.data)
    judged = sorted(q for q in rel if q in queries)
    random.Random(args.seed).shuffle(judged)
    half = len(judged) // 2
    splits = {"train": judged[:half], "test": judged[half:]}
    folder = args.home / "cisi-beir"
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w") as f:
        for i, t in docs.items():
            f.write(json.dumps({"_id": i, "text": t}) + "\n")
    with (folder / "queries.jsonl").open("w") as f:
        for i, t in queries.items():
            f.write(json.dumps({"_id": i, "text": t}) + "\n")
    pairs = 0
    for split, qs in splits.items():
        with (folder / "qrels" / f"{split}.tsv").open("w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            rows = [(q, d) for q in qs for d in sorted(rel[q])]
            if split == "train" and args.max_pairs:
                random.Random(args.seed).shuffle(rows)
                rows = rows[: args.max_pairs]
            pairs = len(rows) if split == "train" else pairs
            f.writelines(f"{q}\t{d}\t1\n" for q, d in rows)
    name = f"cisi-mnrl-s{args.seed}"
    seconds, out = cli(
        args.home, "finetune", "all-minilm", "--train", f"{folder}:train", "--name", name,
        "--loss", "mnrl", "--epochs", "1", "--batch-size", str(args.batch_size),
        "--lr", str(args.lr), "--seed", str(args.seed), "--threads", str(args.threads),
        "--eval", f"{folder}:test",
    )
    _append(args.out, {
        "run": "cisi-mnrl", "train_queries": len(splits["train"]), "test_queries": len(splits["test"]),
        "train_pairs": pairs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "threads": args.threads, "finetune_wall_s": round(seconds, 1), "finetune_stdout": out.strip(),
    })


def _append(path: Path, row: dict) -> None:
    print(json.dumps(row, indent=2))
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the raw data folder (stsb/, cisi/)")
    p.add_argument("--home", type=Path, required=True, help="EMBEDSERVE_HOME to use")
    p.add_argument("--out", type=Path, default=Path("finetune-results.jsonl"))
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=1)
    sub = p.add_subparsers(dest="run", required=True)
    s = sub.add_parser("stsb")
    s.add_argument("--epochs", type=int, nargs="+", default=[1])
    m = sub.add_parser("mnrl")
    m.add_argument("--max-pairs", type=int, default=0, help="train on at most N pairs (0: all)")
    args = p.parse_args()
    args.home.mkdir(parents=True, exist_ok=True)
    cli(args.home, "pull", "all-minilm")
    (stsb if args.run == "stsb" else mnrl)(args)


if __name__ == "__main__":
    main()
