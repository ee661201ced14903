"""``embedserve embed --ray``: a corpus embedded by a Ray Data actor pool, sharded and resumable.

The driver plans shards (``shards.py``), skips those whose output file already exists, and hands
the rest to Ray Data as a dataset of shard descriptors; ``map_batches`` runs :class:`ShardEmbedder`
on an actor pool, one actor per CPU slot of ``threads`` CPUs, each with its own engine of
``threads`` threads. An actor reads its shard, embeds it (the library's length-sorted batches),
and writes ``part-NNNNN.<ext>`` atomically (a temporary name, then rename), so a crash or Ctrl-C
leaves only whole shards, a rerun skips them, and the output is byte-identical to an uninterrupted
run. ``_job.json`` pins what the directory holds (model digest, inputs, shard size, format...); a
rerun with other parameters is refused rather than mixed in.

Output per shard: Parquet (``id`` string, ``embedding`` fixed-size list of float32), JSONL
(``{"id", "embedding"}`` lines) or npy (``part-NNNNN.npy`` plus ``part-NNNNN.ids.txt``). Bad rows
go to ``part-NNNNN.bad.jsonl`` and, for the whole job, ``bad-rows.jsonl``.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedserve.config import Settings
from embedserve.errors import InvalidInput
from embedserve.ray.shards import Shard, plan, read_shard

FORMATS = ("parquet", "jsonl", "npy")
EXTENSIONS = {"parquet": ".parquet", "jsonl": ".jsonl", "npy": ".npy"}
JOB_FILE = "_job.json"


@dataclass(frozen=True)
class Job:
    model: str
    inputs: tuple[str, ...]
    output: str
    fmt: str = "parquet"
    shard_rows: int = 1024
    threads: int = 1  # CPUs and engine threads per actor
    dimensions: int | None = None
    text_field: str = "text"
    id_field: str = "id"
    prompt_name: str | None = None  # one of the model's prompts, prepended to every text


@dataclass
class Outcome:
    shards: int = 0
    skipped: int = 0
    rows: int = 0
    rows_run: int = 0  # rows in the shards this run embedded
    bad: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    startup_seconds: float = 0.0
    model: str = ""


def shard_name(index: int, fmt: str) -> str:
    return f"part-{index:05d}{EXTENSIONS[fmt]}"


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def encode_shard(ids: list[str], vectors: np.ndarray, fmt: str) -> dict[str, bytes]:
    """The files of one shard (name suffix -> bytes); the main file is the ``""`` entry."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        dim = int(vectors.shape[1]) if vectors.ndim == 2 else 0
        flat = pa.array(np.ascontiguousarray(vectors, np.float32).reshape(-1), pa.float32())
        table = pa.table(
            {"id": pa.array(ids, pa.string()), "embedding": pa.FixedSizeListArray.from_arrays(flat, dim)}
        )
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        return {"": buf.getvalue()}
    if fmt == "jsonl":
        import orjson

        rows = [
            orjson.dumps({"id": i, "embedding": v}, option=orjson.OPT_SERIALIZE_NUMPY)
            for i, v in zip(ids, vectors)
        ]
        return {"": b"".join(r + b"\n" for r in rows)}
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(vectors, np.float32))
    return {".ids.txt": "".join(f"{i}\n" for i in ids).encode("utf-8"), "": buf.getvalue()}


class ShardEmbedder:
    """One actor of the pool: an engine, and the shards Ray Data hands it (one per call)."""

    def __init__(self, job: Job, settings: Settings) -> None:
        from embedserve.embedder import Embedder

        self.job = job
        self.embedder = Embedder(job.model, settings=settings, threads=job.threads)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, list[Any]] = {"index": [], "rows": [], "bad": [], "seconds": []}
        for i in range(len(batch["index"])):
            t0 = time.perf_counter()
            shard = Shard(**{k: _scalar(batch[k][i]) for k in Shard.__dataclass_fields__})
            rows, bad = self.run(shard)
            out["index"].append(shard.index)
            out["rows"].append(rows)
            out["bad"].append(json.dumps(bad))
            out["seconds"].append(time.perf_counter() - t0)
        return out

    def run(self, shard: Shard) -> tuple[int, list[dict[str, str]]]:
        job = self.job
        rows = read_shard(shard, job.text_field, job.id_field)
        if rows.texts:
            vectors = self.embedder.encode(
                rows.texts, dimensions=job.dimensions, prompt_name=job.prompt_name
            )
        else:
            vectors = np.zeros((0, job.dimensions or self.embedder.dim), np.float32)
        target = Path(job.output) / shard_name(shard.index, job.fmt)
        if rows.bad:
            bad_lines = "".join(json.dumps(b, ensure_ascii=False) + "\n" for b in rows.bad)
            _atomic_write(target.with_name(f"part-{shard.index:05d}.bad.jsonl"), bad_lines.encode())
        files = encode_shard(rows.ids, vectors, job.fmt)
        for suffix, data in files.items():  # the main file ("") last: it marks the shard done
            if suffix:
                _atomic_write(target.with_name(f"part-{shard.index:05d}{suffix}"), data)
        _atomic_write(target, files[""])
        return len(rows.ids), rows.bad


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _job_record(job: Job, digest: str, shards: int) -> dict[str, Any]:
    record: dict[str, Any] = {
        "model": job.model,
        "digest": digest,
        "inputs": list(job.inputs),
        "format": job.fmt,
        "shard_rows": job.shard_rows,
        "shards": shards,
        "dimensions": job.dimensions,
        "text_field": job.text_field,
        "id_field": job.id_field,
    }
    if job.prompt_name is not None:  # only when set: jobs written before the field resume as they were
        record["prompt_name"] = job.prompt_name
    return record


def check_output(job: Job, record: dict[str, Any]) -> None:
    """Create the output directory, or check that what it holds is this same job."""
    out = Path(job.output)
    manifest = out / JOB_FILE
    if manifest.exists():
        previous = json.loads(manifest.read_text())
        if previous != record:
            changed = sorted(k for k in record if previous.get(k) != record[k])
            raise InvalidInput(
                f"{out} holds shards of another job (different {', '.join(changed)}); "
                "give a new --output directory or delete it"
            )
        return
    if out.exists() and any(out.iterdir()):
        raise InvalidInput(f"{out} is not empty and holds no {JOB_FILE}; give a new --output directory")
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(manifest, (json.dumps(record, indent=1) + "\n").encode())


def run(
    job: Job,
    settings: Settings,
    *,
    address: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    cpus: int | None = None,
) -> Outcome:
    """Embed the corpus; ``progress(rows_done, rows_total)`` after each shard."""
    import ray

    from embedserve.ray import cluster
    from embedserve.store.local import ModelStore

    if job.fmt not in FORMATS:
        raise InvalidInput(f"--format must be one of {', '.join(FORMATS)} with --ray")
    if job.shard_rows < 1:
        raise InvalidInput(f"--shard-rows must be at least 1, got {job.shard_rows}")
    store = ModelStore.from_settings(settings)
    installed = store.find(job.model)
    if installed is None:
        raise store.not_installed(job.model)
    shards = plan(list(job.inputs), job.shard_rows)
    check_output(job, _job_record(job, installed.digest, len(shards)))
    out = Path(job.output)
    todo = [s for s in shards if not (out / shard_name(s.index, job.fmt)).exists()]
    outcome = Outcome(shards=len(shards), skipped=len(shards) - len(todo), model=installed.name)
    total = sum(s.stop - s.start for s in shards)
    pending = {s.index for s in todo}
    done_rows = sum(s.stop - s.start for s in shards if s.index not in pending)
    outcome.rows_run = sum(s.stop - s.start for s in todo)
    t0 = time.perf_counter()
    started = False
    if todo:
        started = cluster.connect(address)
        try:
            outcome.startup_seconds = time.perf_counter() - t0
            available = cpus or cluster.total_cpus()
            actors = max(1, min(len(todo), available // job.threads))
            if available < job.threads:
                raise InvalidInput(
                    f"--actor-threads {job.threads} is more than the cluster's {available} CPUs"
                )
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False
            ctx.verbose_progress = False
            ds = ray.data.from_items([s.to_dict() for s in todo], override_num_blocks=len(todo))
            results = ds.map_batches(
                ShardEmbedder,
                fn_constructor_kwargs={"job": job, "settings": settings},
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=job.threads,
            )
            for row in results.iter_rows():
                finished = shards[int(row["index"])]
                done_rows += finished.stop - finished.start
                if progress is not None:
                    progress(done_rows, total)
        finally:
            if started:
                ray.shutdown()
    outcome.seconds = time.perf_counter() - t0
    outcome.rows, outcome.bad = _tally(out, shards)
    _write_bad(out, outcome.bad)
    return outcome


def _tally(out: Path, shards: list[Shard]) -> tuple[int, list[dict[str, str]]]:
    """Rows embedded and bad rows of the whole job, read back from the shard files."""
    rows = 0
    bad: list[dict[str, str]] = []
    for s in shards:
        bad_file = out / f"part-{s.index:05d}.bad.jsonl"
        shard_bad = []
        if bad_file.exists():
            shard_bad = [json.loads(line) for line in bad_file.read_text().splitlines() if line]
        bad.extend(shard_bad)
        rows += (s.stop - s.start) - len(shard_bad)
    return rows, bad


def _write_bad(out: Path, bad: list[dict[str, str]]) -> None:
    path = out / "bad-rows.jsonl"
    if bad:
        _atomic_write(path, "".join(json.dumps(b, ensure_ascii=False) + "\n" for b in bad).encode())
    elif path.exists():
        path.unlink()


def report(outcome: Outcome, job: Job, stream: Any = None) -> None:
    stream = stream or sys.stderr
    rate = outcome.rows_run / outcome.seconds if outcome.seconds else 0.0
    skipped = f", {outcome.skipped} already written" if outcome.skipped else ""
    print(
        f"embedded {outcome.rows} texts into {outcome.shards} shards in {job.output}{skipped} "
        f"in {outcome.seconds:.2f} s ({rate:.0f} texts/s, Ray start {outcome.startup_seconds:.2f} s) "
        f"with {outcome.model}",
        file=stream,
    )
    if outcome.bad:
        first = ", ".join(b["id"] for b in outcome.bad[:5])
        more = f" and {len(outcome.bad) - 5} more" if len(outcome.bad) > 5 else ""
        print(
            f"warning: {len(outcome.bad)} bad rows not embedded ({first}{more}); "
            f"ids and reasons in {Path(job.output) / 'bad-rows.jsonl'}",
            file=stream,
        )
