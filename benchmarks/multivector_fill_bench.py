"""Filling a multivector collection: sentence and token vectors from one model run vs two.

A collection in multivector mode stores, per chunk, its dense vector and its token vectors. Since
2026-12-07 both come from one run of the model per batch (``Embedder.encode_with_tokens``, the
engine's ``embed_both``); before, ``encode()`` and ``encode(output="token")`` each ran the model.
This script fills the same documents both ways, interleaved round by round (alternating which goes
first), with the real model and the cache off (so the dense run is never skipped by a hit):

* ``one_run``: ``Collection.add`` as it is;
* ``two_runs``: the same, with ``encode_documents`` made to return no token vectors, so the
  token vectors are computed afterwards by a second run (the code path before the change, and
  still the one taken when a document prompt makes the two inputs differ).

It also checks that both fills store the same thing: the same dense top-10 scores and the same
MaxSim scores for a few queries.

    .venv/bin/python benchmarks/multivector_fill_bench.py --home DIR [--docs 400] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from embedserve.config import load
from embedserve.embedder import Embedder
from embedserve.eval.data import load_cisi
from embedserve.index import collection as collection_mod
from embedserve.index import multivector
from embedserve.index.collection import Collection
from embedserve.index.encoder import encode_normalized

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def two_runs(encoder: Any, texts: list[str], *, tokens: bool = False) -> tuple[Any, None]:
    return encode_normalized(encoder, texts, "document"), None


def fill(name: str, settings: Any, emb: Embedder, items: list[dict[str, str]], codec: str,
         *, fused: bool) -> tuple[float, Collection]:
    real = collection_mod.encode_documents
    if not fused:
        collection_mod.encode_documents = two_runs  # type: ignore[assignment]
    try:
        col = Collection.open(name, settings=settings, encoder=emb)
        multivector.enable(col, codec)
        t0 = time.perf_counter()
        col.add(items, batch_size=128)
        return time.perf_counter() - t0, col
    finally:
        collection_mod.encode_documents = real


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", type=Path, required=True, help="a model store holding the model")
    ap.add_argument("--model", default="all-minilm")
    ap.add_argument("--docs", type=int, default=400, help="the first N CISI documents")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--codec", default="int8")
    args = ap.parse_args()

    docs, queries, _ = load_cisi(SHARED_DATA if SHARED_DATA.is_dir() else None)
    items = [{"id": k, "text": v} for k, v in list(docs.items())[: args.docs]]
    with tempfile.TemporaryDirectory() as tmp:
        base = replace(load(), home=args.home, cache_mb=0, redis_url=None)
        settings = replace(base, home=Path(tmp) / "cols")
        (settings.home).mkdir(parents=True)
        (settings.home / "models").symlink_to(base.models_dir)
        emb = Embedder(args.model, settings=base, cache=False)
        fill("warm", settings, emb, items[:32], args.codec, fused=True)[1].close()
        Collection.drop("warm", settings)
        times: dict[str, list[float]] = {"one_run": [], "two_runs": []}
        chunks = 0
        for r in range(args.rounds):
            order = ["one_run", "two_runs"] if r % 2 == 0 else ["two_runs", "one_run"]
            cols: dict[str, Collection] = {}
            for how in order:
                seconds, cols[how] = fill(f"{how}-{r}", settings, emb, items, args.codec,
                                          fused=how == "one_run")
                times[how].append(seconds)
            chunks = cols["one_run"].info().chunks
            if r == 0:  # both store the same vectors
                for q in list(queries.values())[:5]:
                    for kw in ({}, {"rerank": "maxsim", "candidates": 30}):
                        a = [(h.id, h.score) for h in cols["one_run"].query(q, top_k=10, **kw)]
                        b = [(h.id, h.score) for h in cols["two_runs"].query(q, top_k=10, **kw)]
                        assert a == b, (q, kw, a, b)
            for how, col in cols.items():
                col.close()
                Collection.drop(f"{how}-{r}", settings)
            print(json.dumps({"round": r, **{k: round(v[-1], 3) for k, v in times.items()}}), flush=True)
    one, two = statistics.median(times["one_run"]), statistics.median(times["two_runs"])
    ratios = [b / a for a, b in zip(times["one_run"], times["two_runs"])]
    print(json.dumps({
        "model": args.model, "documents": len(items), "chunks": chunks, "codec": args.codec,
        "rounds": args.rounds, "one_run_s": round(one, 2), "two_runs_s": round(two, 2),
        "one_run_docs_per_s": round(len(items) / one, 1), "two_runs_docs_per_s": round(len(items) / two, 1),
        "speedup_median": round(statistics.median(ratios), 3),
        "speedup_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "same_results": True,
    }, indent=2))


if __name__ == "__main__":
    main()
