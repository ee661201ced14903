"""Late interaction and reranking: CISI nDCG@10 and latency, token-embedding and rerank throughput.

    RERANK_BENCH_HOME=/tmp/home python benchmarks/rerank_bench.py cisi [--codecs int8,float32]
    RERANK_BENCH_HOME=/tmp/home python benchmarks/rerank_bench.py throughput [--texts 256] [--pairs 500]

``cisi``: CISI (1,460 title + abstract documents, the 76 judged queries) in a collection in
multivector mode per layout (truncating: chunk_tokens 0; chunked: the default window) and token
codec; per query, one at a time, dense top-10 and dense top-100 re-scored by MaxSim over the same
model's token vectors (the naive ColBERT recipe with a single-vector model), the two interleaved
(alternating which goes first). The collections are filled with one embedder (its cache on, so a
second codec's dense vectors come from it) and queried with another whose cache is off, so every
query is encoded. Reports nDCG@10, p50/p99 query latency of each, and disk per chunk (the dense
float32 vector, the token codes and scales, and the token file's size on disk per chunk).
``--rerank-model NAME`` adds dense top-100 re-scored by that cross-encoder (a model in the home).

``throughput``: one run, the same texts and pairs for every contender, interleaved rounds
(``--rounds``, medians; each round alternates which contender goes first); caches off.
* token embeddings vs pooled: texts/s of ``encode(output="token")`` vs ``encode()`` in the
  library, and of ``POST /embed_all`` vs ``POST /api/embed`` (``--clients`` clients x 1 text) on
  an ``embedserve serve`` subprocess driven by benchmarks/load.py's raw asyncio client (~80 us of
  CPU a request, so the 2 cores stay with the server).
* rerank: pairs/s of ``Reranker.predict`` vs sentence-transformers' ``CrossEncoder.predict``
  (batch 32) on the same pairs, and of ``POST /v1/rerank`` (one query x 50 documents a request, 4
  raw clients). Without a real cross-encoder the model has ms-marco-MiniLM-L-6-v2's shape:
  all-minilm's encoder weights plus a random pooler and classifier (throughput only; the scores
  mean nothing). Needs the ``reference`` extra.

Prints one JSON object per section. The model is pulled into ``RERANK_BENCH_HOME`` (a writable
copy of a model store: the benchmark creates its reranker model and collections there) or a
temporary home.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from embedserve.config import Settings
from embedserve.embedder import Embedder

BENCH = Path(__file__).resolve().parent


def _home(tmp: Path, model: str) -> Settings:
    from embedserve.store.local import ModelStore

    home = Path(os.environ.get("RERANK_BENCH_HOME") or tmp / "home")  # reuse a pulled model
    store = ModelStore(home)
    try:
        store.get(model)
    except Exception:  # noqa: BLE001 - not there yet: pull it
        store.pull(model)
    return Settings(home=home, offline=True)


def _pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, p))


def _file_bytes(path: Path) -> int:
    return sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{path}{s}").exists())


def run_cisi(model: str, codecs: tuple[str, ...], data_dir: Path | None, n_docs: int | None = None,
             sections: tuple[str, ...] = ("truncate", "chunked"), rerank_model: str | None = None,
             candidates: int = 100) -> dict[str, Any]:
    from embedserve.eval.data import load_cisi, mean_ndcg_at_k
    from embedserve.index import multivector
    from embedserve.index.collection import Collection

    docs, queries, qrels = load_cisi(data_dir)
    if n_docs:  # a subset (the first n documents; qrels cut to them): for a smoke test
        docs = dict(list(docs.items())[:n_docs])
        qrels = {q: rel & set(docs) for q, rel in qrels.items() if rel & set(docs)}
    judged = [q for q in queries if q in qrels]
    items = [{"id": k, "text": v} for k, v in docs.items()]
    out: dict[str, Any] = {"model": model, "documents": len(docs), "judged_queries": len(judged),
                           "candidates": candidates}
    with tempfile.TemporaryDirectory() as tmp:
        settings = _home(Path(tmp), model)
        settings = replace(settings, home=Path(tmp) / "cols")  # collections in the temp dir
        (settings.home / "models").parent.mkdir(parents=True, exist_ok=True)
        (settings.home / "models").symlink_to(_home(Path(tmp), model).models_dir)
        emb = Embedder(model, settings=settings)  # cache on: the second codec's dense pass hits it
        qemb = Embedder(model, settings=replace(settings, cache_mb=0))  # every query encoded
        for label, ct in (("truncate", 0), ("chunked", None)):
            if label not in sections:
                continue
            for codec in codecs:
                name = f"cisi-{label}-{codec}"
                col = Collection.open(name, settings=settings, encoder=emb, chunk_tokens=ct)
                store = multivector.enable(col, codec)
                t0 = time.perf_counter()
                col.add(items, batch_size=128)
                row: dict[str, Any] = {"chunks": col.info().chunks, "add_s": round(time.perf_counter() - t0, 1)}
                kinds: dict[str, dict[str, Any]] = {"dense": {}, f"maxsim@{candidates}": {
                    "rerank": "maxsim", "candidates": candidates}}
                if rerank_model:
                    kinds[f"{rerank_model}@{candidates}"] = {"rerank": rerank_model, "candidates": candidates}
                for kw in kinds.values():  # warm each path
                    col.query(queries[judged[0]], top_k=10, encoder=qemb, **kw)
                lat: dict[str, list[float]] = {k: [] for k in kinds}
                rankings: dict[str, dict[str, list[str]]] = {k: {} for k in kinds}
                for n, q in enumerate(judged):
                    order = list(kinds) if n % 2 == 0 else list(kinds)[::-1]
                    for how in order:
                        t = time.perf_counter()
                        hits = col.query(queries[q], top_k=10, encoder=qemb, **kinds[how])
                        lat[how].append(time.perf_counter() - t)
                        rankings[how][q] = [h.id for h in hits]
                for how in kinds:
                    row[how] = {"ndcg@10": round(mean_ndcg_at_k(rankings[how], qrels, 10), 4),
                                "p50_ms": round(_pct(lat[how], 50), 1), "p99_ms": round(_pct(lat[how], 99), 1)}
                stats = store.stats()
                chunks = max(1, stats["chunks"])
                store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                row["disk_per_chunk"] = {
                    "dense_float32_bytes": emb.dim * 4,
                    f"tokens_{codec}_bytes": round(stats["bytes_per_chunk"]),
                    "token_file_bytes": round(_file_bytes(store.path) / chunks),
                    "tokens_per_chunk": round(stats["tokens"] / chunks, 1)}
                out[f"{label}/{codec}"] = row
                print(json.dumps({f"{label}/{codec}": row}), file=sys.stderr, flush=True)
                col.close()
                Collection.drop(name, settings)
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


def _raw_rate(url: str, path: str, bodies: list[bytes], clients: int) -> float:
    """Requests/s of ``clients`` raw keep-alive connections posting ``bodies`` (each once)."""
    sys.path.insert(0, str(BENCH))
    from load import RawClient  # type: ignore[import-not-found]

    async def go() -> float:
        queue = list(reversed(bodies))

        async def client() -> None:
            conn = RawClient(url, path)
            try:
                while queue:
                    status, payload = await conn.post(queue.pop())
                    if status != 200:
                        raise SystemExit(f"{path}: HTTP {status}: {payload[:200]!r}")
            finally:
                await conn.close()

        t = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return len(bodies) / (time.perf_counter() - t)

    return asyncio.run(go())


def _interleaved(rounds: int, contenders: dict[str, Any]) -> dict[str, list[float]]:
    """Each contender's result per round, the order flipped every round."""
    out: dict[str, list[float]] = {k: [] for k in contenders}
    for r in range(rounds):
        for k in (list(contenders) if r % 2 == 0 else list(contenders)[::-1]):
            out[k].append(contenders[k]())
    return out


def _partial(out: dict[str, Any]) -> None:
    """What is measured so far, on stderr (a run cut short keeps it)."""
    print(json.dumps(out), file=sys.stderr, flush=True)


def _timed_rate(n: int, fn: Any) -> Any:
    def run() -> float:
        t = time.perf_counter()
        fn()
        return n / (time.perf_counter() - t)
    return run


PARTS = ("library", "rerank", "http")


def run_throughput(model: str, n_pairs: int, data_dir: Path | None, n_texts: int = 256,
                   rounds: int = 3, clients: int = 8, parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    import torch

    from embedserve.eval.data import load_cisi
    from embedserve.store.local import ModelStore

    torch.set_num_threads(2)
    docs, queries, _ = load_cisi(data_dir)
    doc_texts = list(docs.values())
    q_texts = list(queries.values())
    per_query = 50
    groups = [(q_texts[i % len(q_texts)], doc_texts[(i * per_query) % len(doc_texts):][:per_query])
              for i in range(max(1, n_pairs // per_query))]
    pairs = [(q, d) for q, ds in groups for d in ds]
    texts = doc_texts[:n_texts]
    out: dict[str, Any] = {"model": model, "pairs": len(pairs), "texts": len(texts), "rounds": rounds}
    with tempfile.TemporaryDirectory() as tmp:
        settings = replace(_home(Path(tmp), model), cache_mb=0)
        store = ModelStore(settings.home)
        ce_dir = _cross_encoder_folder(store.get(model).folder, Path(tmp) / "ce")
        try:
            store.get("bench-rerank")
        except Exception:  # noqa: BLE001 - not created yet
            store.create("bench-rerank", source=ce_dir)

        if "library" in parts:  # token vs pooled on the same texts
            _library(out, Embedder(model, settings=settings), texts, rounds)
        if "rerank" in parts:
            _rerank_library(out, settings, ce_dir, pairs, rounds)
        if "http" in parts:
            _http(out, model, settings, texts, groups, rounds, clients)
    return out


def _library(out: dict[str, Any], emb: Any, texts: list[str], rounds: int) -> None:
    med = statistics.median
    emb.encode(texts[:32]), emb.encode(texts[:32], output="token")
    lib = _interleaved(rounds, {
        "encode": _timed_rate(len(texts), lambda: emb.encode(texts)),
        "encode_token": _timed_rate(len(texts), lambda: emb.encode(texts, output="token")),
    })
    out["library_texts_per_s"] = {k: round(med(v), 1) for k, v in lib.items()}
    out["library_token_over_pooled"] = round(med(lib["encode_token"]) / med(lib["encode"]), 3)
    out["library_rounds"] = {k: [round(x, 1) for x in v] for k, v in lib.items()}
    _partial(out)


def _rerank_library(out: dict[str, Any], settings: Settings, ce_dir: Path, pairs: list[tuple[str, str]],
                    rounds: int) -> None:
    from sentence_transformers import CrossEncoder

    from embedserve.reranker import Reranker

    med = statistics.median
    # library rerank vs sentence-transformers on the same pairs
    rr = Reranker("bench-rerank", settings=settings)
    st = CrossEncoder(str(ce_dir), device="cpu", max_length=512)
    ours = rr.predict(pairs[:64]); theirs = st.predict(pairs[:64], batch_size=32)
    out["rerank_max_abs_diff"] = float(np.abs(np.asarray(ours) - np.asarray(theirs)).max())
    rer = _interleaved(rounds, {
        "embedserve": _timed_rate(len(pairs), lambda: rr.predict(pairs)),
        "sentence_transformers": _timed_rate(len(pairs), lambda: st.predict(pairs, batch_size=32)),
    })
    out["rerank_pairs_per_s"] = {k: round(med(v), 1) for k, v in rer.items()}
    out["rerank_ratio"] = round(med(rer["embedserve"]) / med(rer["sentence_transformers"]), 2)
    out["rerank_rounds"] = {k: [round(x, 1) for x in v] for k, v in rer.items()}
    _partial(out)


def _http(out: dict[str, Any], model: str, settings: Settings, texts: list[str],
          groups: list[tuple[str, list[str]]], rounds: int, clients: int) -> None:
    sys.path.insert(0, str(BENCH))
    from load import _free_port, start_server, wait_up  # type: ignore[import-not-found]

    med = statistics.median
    per_query = len(groups[0][1])
    # HTTP: an embedserve serve subprocess, raw clients
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    os.environ["EMBEDSERVE_CACHE_MB"] = "0"
    proc = start_server(settings.home, port)
    try:
        wait_up(url, 120)
        pooled = [json.dumps({"model": model, "input": t}).encode() for t in texts]
        token = [json.dumps({"model": model, "inputs": t}).encode() for t in texts]
        rerank = [json.dumps({"model": "bench-rerank", "query": q, "documents": ds,
                              "return_documents": False}).encode() for q, ds in groups]
        _raw_rate(url, "/api/embed", pooled[:16], clients)  # load the models, warm up
        _raw_rate(url, "/embed_all", token[:16], clients)
        _raw_rate(url, "/v1/rerank", rerank[:1], 1)
        http = _interleaved(rounds, {
            "/api/embed": lambda: _raw_rate(url, "/api/embed", pooled, clients),
            "/embed_all": lambda: _raw_rate(url, "/embed_all", token, clients),
        })
        out[f"http_texts_per_s_{clients}_clients"] = {k: round(med(v), 1) for k, v in http.items()}
        out["http_token_over_pooled"] = round(med(http["/embed_all"]) / med(http["/api/embed"]), 3)
        out["http_rounds"] = {k: [round(x, 1) for x in v] for k, v in http.items()}
        _partial(out)
        reqs = [_raw_rate(url, "/v1/rerank", rerank, 4) for _ in range(rounds)]
        out.setdefault("rerank_pairs_per_s", {})["http_v1_rerank_4_clients"] = round(med(reqs) * per_query, 1)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("section", choices=("cisi", "throughput"))
    ap.add_argument("--model", default="all-minilm")
    ap.add_argument("--codecs", default="int8,float32", help="cisi: token codecs, comma-separated")
    ap.add_argument("--rerank-model", default=None, help="cisi: also re-score with this cross-encoder")
    ap.add_argument("--pairs", type=int, default=500)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--docs", type=int, default=None, help="cisi: only the first N documents")
    ap.add_argument("--only", choices=("truncate", "chunked"), default=None)
    ap.add_argument("--texts", type=int, default=256, help="throughput: texts embedded")
    ap.add_argument("--rounds", type=int, default=3, help="throughput: interleaved rounds")
    ap.add_argument("--clients", type=int, default=8, help="throughput: HTTP clients for embeddings")
    ap.add_argument("--parts", default=",".join(PARTS), help="throughput: which of library,rerank,http")
    args = ap.parse_args()
    if args.section == "cisi":
        codecs = tuple(c.strip() for c in args.codecs.split(",") if c.strip())
        result = run_cisi(args.model, codecs, args.data_dir, args.docs,
                          (args.only,) if args.only else ("truncate", "chunked"), args.rerank_model)
    else:
        parts = tuple(x.strip() for x in args.parts.split(",") if x.strip())
        result = run_throughput(args.model, args.pairs, args.data_dir, args.texts, args.rounds, args.clients, parts)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
