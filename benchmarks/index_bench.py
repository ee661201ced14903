"""Collections benchmark: search latency and recall by strategy, indexing throughput and nDCG on CISI.

    python benchmarks/index_bench.py synthetic [--sizes 10000 100000] [--queries 200]
    python benchmarks/index_bench.py cisi [--model all-minilm]      # needs the real model installed

``synthetic``: unit vectors (dim 384) drawn around 2,000 cluster centres (real embeddings cluster;
uniform random vectors would be the worst case for 1-bit codes), one chunk per document, written
straight to a collection; queries are perturbed copies of held-out points. Reports p50/p99 latency
of one query (top 10) for exact, binary + rescoring, int8 + rescoring and the usearch HNSW index,
and each one's recall@10 against exact.

``scale``: collections of 100k and 1M chunks grown through the public API (documents that bring
their own 384-d vectors, clustered as above), measuring what issue 11 asks: the time to add 1 and
1,000 documents to the full collection (the commit, and the commit plus the next query, which
brings the reader and the HNSW index up to date), query p50/p99 and recall@10 (against exact) for
exact, binary and int8 with float32 rescoring and HNSW, resident memory and disk per million
chunks, and open time (a fresh ``Collection`` loading the collection; the HNSW index built once,
then loaded from its file after a reopen).

    python benchmarks/index_bench.py scale [--sizes 100000 1000000] [--queries 200]

``cisi``: indexes CISI (title + " " + abstract) into a chunked (default) and a truncating
collection, reporting documents/s and chunks/s, then nDCG@10 over the 76 judged queries through
each collection and through the Embedder directly. Prints one JSON object per section.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from embedserve.config import Settings
from embedserve.engine.base import EngineInfo
from embedserve.index.collection import Collection
from embedserve.index.store import ChunkData, DocumentWrite
from embedserve.vectors import l2_normalize


class _VectorsOnly:
    """Stands in for a model so that a collection can be created; never asked to encode."""

    def __init__(self, dim: int) -> None:
        self.info = EngineInfo("synthetic:latest", dim, 256, "mean", True, "")

    def encode(self, texts: list[str], **_: object) -> np.ndarray:
        raise RuntimeError("synthetic collection: no encoding")

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return []


def synthetic_vectors(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    idx = rng.integers(0, len(centres), n)
    return l2_normalize(centres[idx] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim))


def fill(col: Collection, vecs: np.ndarray, batch: int = 5000) -> None:
    store, cid = col._store, col._row.id
    for i in range(0, len(vecs), batch):
        ups = [
            DocumentWrite(str(j), f"h{j}", f"doc {j}", "{}", [ChunkData(0, 0, 5, vecs[j])])
            for j in range(i, min(i + batch, len(vecs)))
        ]
        store.write(cid, ups)


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, p))


def run_synthetic(sizes: list[int], n_queries: int, dim: int = 384) -> dict[str, object]:
    from embedserve.index.ann import available

    rng = np.random.default_rng(0)
    centres = l2_normalize(rng.standard_normal((2000, dim)).astype(np.float32))
    import os

    out: dict[str, object] = {
        "dim": dim, "queries": n_queries, "results": [],
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp))
        for n in sizes:
            vecs = synthetic_vectors(n, dim, rng, centres)
            queries = synthetic_vectors(n_queries, dim, rng, centres)
            col = Collection.open(f"syn{n}", settings=settings, encoder=_VectorsOnly(dim))  # type: ignore[arg-type]
            t0 = time.perf_counter()
            fill(col, vecs)
            write_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            col.search_vectors(queries[:1], 10, strategy="exact")
            load_s = time.perf_counter() - t0
            row: dict[str, object] = {"chunks": n, "store_write_s": round(write_s, 2), "load_s": round(load_s, 2)}
            strategies = ["exact", "binary", "int8"] + (["ann"] if available() else [])
            truth: list[set[str]] = []
            for strategy in strategies:
                if strategy == "ann":
                    t0 = time.perf_counter()
                    col.search_vectors(queries[:1], 10, strategy="ann")  # builds the index
                    row["ann_build_s"] = round(time.perf_counter() - t0, 2)
                else:
                    col.search_vectors(queries[:1], 10, strategy=strategy)  # warm (codes built)
                lat: list[float] = []
                got: list[set[str]] = []
                for q in queries:
                    t0 = time.perf_counter()
                    (hits,) = col.search_vectors(q[None, :], 10, strategy=strategy)
                    lat.append(time.perf_counter() - t0)
                    got.append({h.id for h in hits})
                if strategy == "exact":
                    truth = got
                recall = float(np.mean([len(a & b) / 10 for a, b in zip(truth, got)]))
                row[strategy] = {"p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2),
                                 "recall@10": round(recall, 4)}
            # and a matrix product alone, to show the fixed per-query overhead (SQL for hit texts)
            lat = []
            for q in queries:
                t0 = time.perf_counter()
                s = vecs @ q
                np.argpartition(-s, 10)[:10]
                lat.append(time.perf_counter() - t0)
            row["numpy_matvec_only_p50_ms"] = round(pct(lat, 50), 2)
            col.close()
            out["results"].append(row)  # type: ignore[attr-defined]
            print(json.dumps(row), file=sys.stderr)
    return out


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _disk_mb(folder: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in folder.rglob("*"):
        if p.is_file():
            key = {".f32": "segments", ".rows": "row_sidecars", ".usearch": "ann"}.get(p.suffix, "sqlite")
            out[key] = out.get(key, 0.0) + p.stat().st_size / 2**20
    return {k: round(v, 1) for k, v in out.items()}


def _evict(folder: Path) -> None:
    """Drop a folder's files from the page cache (``POSIX_FADV_DONTNEED``; no root needed), so the
    next open reads them from disk: a cold open."""
    import os

    for p in folder.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _open_timed(settings: Settings, enc: Any, query: np.ndarray, strategy: str) -> tuple[Collection, float]:
    t0 = time.perf_counter()
    col = Collection.open("scale", settings=settings, encoder=enc)  # type: ignore[arg-type]
    col.search_vectors(query, 10, strategy=strategy)  # type: ignore[arg-type]
    return col, time.perf_counter() - t0


def _timed(fn: Any, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _stats(xs: list[float]) -> dict[str, float]:
    return {"p50_ms": round(pct(xs, 50), 2), "p99_ms": round(pct(xs, 99), 2), "max_ms": round(max(xs) * 1000, 2)}


def run_scale(sizes: list[int], n_queries: int, dim: int = 384, home: Path | None = None,
              ann_upto: int = 10**9) -> dict[str, object]:
    """See the module docstring (``scale``)."""
    from embedserve.index.ann import available as ann_installed

    rng = np.random.default_rng(1)
    centres = l2_normalize(rng.standard_normal((2000, dim)).astype(np.float32))
    out: dict[str, object] = {"dim": dim, "queries": n_queries, "results": []}
    enc = _VectorsOnly(dim)
    for n in sizes:
        with tempfile.TemporaryDirectory(dir=home) as tmp:
            settings = Settings(home=Path(tmp))
            row: dict[str, Any] = {"chunks": n}

            def available() -> bool:
                return ann_installed() and n <= ann_upto  # noqa: B023

            rss0 = _rss_mb()
            col = Collection.open("scale", settings=settings, encoder=enc)  # type: ignore[arg-type]
            t0 = time.perf_counter()
            step = 20_000
            for i in range(0, n, step):
                vecs = synthetic_vectors(min(step, n - i), dim, rng, centres)
                col.add([{"id": str(i + j), "text": f"doc {i + j}", "embedding": v} for j, v in enumerate(vecs)],
                        batch_size=step)
            row["fill_s"] = round(time.perf_counter() - t0, 1)
            row["fill_docs_per_s"] = round(n / (time.perf_counter() - t0))
            col.close()
            queries = synthetic_vectors(n_queries, dim, rng, centres)
            # open: a fresh Collection loads the whole collection (the reader's first delta) and
            # answers one exact query; cold = its files evicted from the page cache first; "SQL
            # rows" = with the row sidecars moved away, so every chunk row comes through sqlite3
            # (the path every open took before the sidecars)
            opens = []
            for _ in range(3):
                c, s_ = _open_timed(settings, enc, queries[:1], "exact")
                c.close()
                opens.append(s_)
            row["open_warm_s"] = [round(x, 2) for x in opens]
            _evict(settings.collections_dir)
            c, s_ = _open_timed(settings, enc, queries[:1], "exact")
            row["open_cold_s"] = round(s_, 2)
            c.close()
            sidecars = list(settings.collections_dir.rglob("*.rows"))
            for p in sidecars:
                p.rename(p.with_name(p.name + ".away"))
            from embedserve.index import sqlite_store

            real_rebuild = sqlite_store.SQLiteStore.rebuild_sidecars
            sqlite_store.SQLiteStore.rebuild_sidecars = lambda *a: None  # type: ignore[method-assign,assignment]
            try:
                c, s_ = _open_timed(settings, enc, queries[:1], "exact")
                row["open_sql_rows_s"] = round(s_, 2)
                c.close()
            finally:
                sqlite_store.SQLiteStore.rebuild_sidecars = real_rebuild  # type: ignore[method-assign]
                for p in sidecars:
                    p.with_name(p.name + ".away").rename(p)
            print(json.dumps({k: row[k] for k in row if k.startswith("open")}), file=sys.stderr, flush=True)
            del c
            gc.collect()
            rss0 = _rss_mb()
            col, s_ = _open_timed(settings, enc, queries[:1], "exact")
            row["rss_after_open_mb"] = round(_rss_mb() - rss0)
            # binary_fixed200: the rescoring window before it grew with the collection
            strategies = ["exact", "binary", "binary_fixed200", "int8"] + (["ann"] if available() else [])
            truth: list[set[str]] = []
            cfg = col.search_config
            for label in strategies:
                strategy = "binary" if label == "binary_fixed200" else label
                col.search_config = replace(cfg, rescore_fraction=0.0) if label == "binary_fixed200" else cfg
                t0 = time.perf_counter()
                col.search_vectors(queries[:1], 10, strategy=strategy)  # builds codes / the HNSW index
                if strategy == "ann":
                    row["ann_build_s"] = round(time.perf_counter() - t0, 1)
                    row["ann_build_vectors_per_s"] = round(n / (time.perf_counter() - t0))
                    row["ann_threads"] = col._ann.threads
                    row["rss_with_ann_mb"] = round(_rss_mb() - rss0)
                lat, got = [], []
                for q in queries:
                    t0 = time.perf_counter()
                    (hits,) = col.search_vectors(q[None, :], 10, strategy=strategy)
                    lat.append(time.perf_counter() - t0)
                    got.append({h.id for h in hits})
                if strategy == "exact":
                    truth = got
                recall = float(np.mean([len(a & b) / 10 for a, b in zip(truth, got)]))
                row[label] = {"p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2),
                              "recall@10": round(recall, 4)}
                print(json.dumps({label: row[label]}), file=sys.stderr, flush=True)
            col.search_config = cfg
            if available():  # the HNSW search's breadth: recall against latency
                assert col._ann is not None
                default = col._ann.index.expansion_search
                for ef in [e for e in (64, 128, 256) if e != default]:
                    col._ann.index.expansion_search = ef
                    lat, got = [], []
                    for q in queries:
                        t0 = time.perf_counter()
                        (hits,) = col.search_vectors(q[None, :], 10, strategy="ann")
                        lat.append(time.perf_counter() - t0)
                        got.append({h.id for h in hits})
                    recall = float(np.mean([len(a & b) / 10 for a, b in zip(truth, got)]))
                    row[f"ann_ef_search={ef}"] = {"p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2),
                                                  "recall@10": round(recall, 4)}
                    print(json.dumps({f"ann_ef_search={ef}": row[f"ann_ef_search={ef}"]}), file=sys.stderr, flush=True)
                col._ann.index.expansion_search = default
            # writes to the full collection
            last = "ann" if available() else "binary"
            counter = iter(range(10**9))

            def add(k: int) -> None:
                base = next(counter) * 10_000
                vecs = synthetic_vectors(k, dim, rng, centres)
                col.add([{"id": f"new-{base + j}", "text": "new", "embedding": v} for j, v in enumerate(vecs)],
                        batch_size=max(k, 1))

            def add_then_query(k: int) -> None:
                add(k)
                col.search_vectors(queries[:1], 10, strategy=last)

            def add_then_catch_up(k: int) -> None:  # the reader's snapshot brought up to date, no search
                add(k)
                with col._lock, col._store.read(col._row.id) as view:
                    col._snapshot(view)

            row["add_1"] = _stats(_timed(lambda: add(1), 30))
            row["add_1_then_reader_catch_up"] = _stats(_timed(lambda: add_then_catch_up(1), 30))
            row["add_1_then_query"] = _stats(_timed(lambda: add_then_query(1), 30))
            row["add_1000"] = _stats(_timed(lambda: add(1000), 5))
            row["add_1000_then_query"] = _stats(_timed(lambda: add_then_query(1000), 5))
            print(json.dumps({k: row[k] for k in row if k.startswith("add")}), file=sys.stderr, flush=True)
            col.close()  # saves the HNSW index
            row["disk_mb"] = _disk_mb(settings.collections_dir)
            if available():
                col, s_ = _open_timed(settings, enc, queries[:1], "ann")
                row["open_with_saved_ann_s"] = round(s_, 2)
                assert col._ann is not None
                row["ann_loaded_not_rebuilt"] = bool(col._ann.loaded)
                row["ann_reconciled"] = col._ann.last_sync
                col.close()
            out["results"].append(row)  # type: ignore[attr-defined]
            print(json.dumps(row), file=sys.stderr, flush=True)
    return out


def probe_hnsw_build(n: int, dim: int = 384) -> dict[str, object]:
    """usearch's batch add of ``n`` clustered vectors (as ``scale``), by threads and ``expansion_add``:
    what the build rate depends on."""
    from embedserve.config import cpu_quota
    from embedserve.index.ann import _import_usearch

    _import_usearch()
    from usearch.index import Index

    rng = np.random.default_rng(2)
    centres = l2_normalize(rng.standard_normal((2000, dim)).astype(np.float32))
    vecs = synthetic_vectors(n, dim, rng, centres)
    out: dict[str, object] = {"vectors": n, "cpu_quota": cpu_quota()}
    for ef, threads in ((128, 1), (128, cpu_quota()), (128, 0), (64, cpu_quota())):
        idx = Index(ndim=dim, metric="ip", dtype="f16", connectivity=16, expansion_add=ef, expansion_search=64)
        t0 = time.perf_counter()
        idx.add(np.arange(n, dtype=np.uint64), vecs, threads=threads)
        out[f"ef_add={ef} threads={threads}"] = round(n / (time.perf_counter() - t0))
        print(json.dumps(out), file=sys.stderr, flush=True)
    return out


def run_cisi(model: str, data_dir: Path | None, which: list[str]) -> dict[str, object]:
    from embedserve.config import load
    from embedserve.embedder import Embedder
    from embedserve.eval.data import load_cisi, mean_ndcg_at_k

    docs, queries, qrels = load_cisi(data_dir)
    settings = load()
    emb = Embedder(model=model, settings=settings)
    judged = [q for q in queries if q in qrels]
    qtexts = [queries[q] for q in judged]
    out: dict[str, object] = {"model": emb.info.name, "documents": len(docs), "judged_queries": len(judged)}
    items = [{"id": k, "text": v} for k, v in docs.items()]
    with tempfile.TemporaryDirectory() as tmp:
        s = Settings(home=Path(tmp))
        for label, ct in (("chunked", None), ("truncate", 0)):
            if label not in which:
                continue
            col = Collection.open(f"cisi-{label}", settings=s, encoder=emb, chunk_tokens=ct)  # type: ignore[arg-type]
            r = col.add(items, batch_size=128)
            t0 = time.perf_counter()
            results = col.query(qtexts, top_k=10)
            q_s = time.perf_counter() - t0
            rankings = {q: [h.id for h in hs] for q, hs in zip(judged, results)}  # type: ignore[union-attr]
            info = col.info()
            out[label] = {
                "chunk_tokens": info.chunk_tokens, "overlap": info.overlap, "chunks": info.chunks,
                "index_s": round(r.seconds, 1), "docs_per_s": round(r.documents / r.seconds, 1),
                "chunks_per_s": round(r.chunks / r.seconds, 1),
                "ndcg@10": round(mean_ndcg_at_k(rankings, qrels, 10), 4),
                "queries_s": round(q_s, 2),
            }
            print(json.dumps({label: out[label]}), file=sys.stderr)
            col.close()
    if "direct" not in which:
        return out
    # directly through the Embedder (truncating), exact cosine
    ids = list(docs)
    t0 = time.perf_counter()
    dv = l2_normalize(emb.encode([docs[i] for i in ids]))
    direct_s = time.perf_counter() - t0
    qv = l2_normalize(emb.encode(qtexts))
    top = np.argsort(-(qv @ dv.T), axis=1)[:, :10]
    rankings = {q: [ids[j] for j in row] for q, row in zip(judged, top)}
    out["direct"] = {"ndcg@10": round(mean_ndcg_at_k(rankings, qrels, 10), 4), "encode_s": round(direct_s, 1),
                     "docs_per_s": round(len(ids) / direct_s, 1)}
    out["reference_sentence_transformers_ndcg@10"] = 0.4193
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    sy = sub.add_parser("synthetic")
    sy.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    sy.add_argument("--queries", type=int, default=200)
    sc = sub.add_parser("scale")
    sc.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    sc.add_argument("--queries", type=int, default=200)
    sc.add_argument("--home", type=Path, default=None, help="folder for the temporary collections")
    sc.add_argument("--ann-upto", type=int, default=10**9, help="build the HNSW index only up to this size")
    sc.add_argument("--probe-hnsw", type=int, default=0, help="first time usearch batch adds of this many vectors")
    ci = sub.add_parser("cisi")
    ci.add_argument("--model", default="all-minilm")
    ci.add_argument("--data-dir", type=Path, default=None)
    ci.add_argument("--only", nargs="+", choices=["chunked", "truncate", "direct"],
                    default=["chunked", "truncate", "direct"])
    args = ap.parse_args()
    if args.what == "synthetic":
        res = run_synthetic(args.sizes, args.queries)
    elif args.what == "scale":
        probe = probe_hnsw_build(args.probe_hnsw) if args.probe_hnsw else None
        res = run_scale(args.sizes, args.queries, home=args.home, ann_upto=args.ann_upto)
        if probe is not None:
            res["hnsw_build_probe"] = probe
    else:
        res = run_cisi(args.model, args.data_dir, args.only)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
