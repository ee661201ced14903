"""Fine-tune an installed model and install the result in the store under a new name.

1. The base model's folder in the store is loaded by sentence-transformers (CPU).
2. It is trained (:mod:`embedserve.train.loop`) inside a staging folder in the store's ``tmp/``.
3. The result is saved as a sentence-transformers folder there and installed like
   ``create NEW --from FOLDER`` (files hashed, blob renamed in, manifest written last), with a
   ``training`` record: base name and digest, loss, data hash, hyper-parameters, losses, time.

Nothing is installed until training has finished: an exception or Ctrl-C at any point before
leaves the store as it was, and the staging folder is removed on the way out (or, after a hard
kill, by the next store operation that stages, since its process is dead).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from embedserve.errors import InvalidInput
from embedserve.store.files import remove_tree
from embedserve.store.local import InstalledModel, ModelStore
from embedserve.train.data import TrainData
from embedserve.train.loop import Step, TrainConfig, import_torch, train

__all__ = ["finetune", "training_record"]


def training_record(
    base: InstalledModel,
    data: TrainData,
    config: TrainConfig,
    losses: list[float],
    steps: int,
    seconds: float,
) -> dict[str, Any]:
    torch, st = import_torch()
    return {
        "base": base.name,
        "base_digest": base.digest,
        "loss": data.loss,
        "data": data.source,
        "data_sha256": data.sha256,
        "examples": len(data),
        **asdict(config),
        "steps": steps,
        "epoch_losses": [round(x, 6) for x in losses],
        "seconds": round(seconds, 1),
        "trainer": f"sentence-transformers {st.__version__}, torch {torch.__version__}",
    }


def _quiet_hub_bars() -> None:
    """transformers' own "Loading weights" / "Writing shards" bars would break our one bar."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except (ImportError, AttributeError):
        pass


def finetune(
    store: ModelStore,
    base: str,
    name: str,
    data: TrainData,
    config: TrainConfig,
    *,
    quantize: str | None = None,
    threads: int | None = None,
    on_step: Callable[[Step], None] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> InstalledModel:
    """Train ``base`` on ``data`` and install it as ``name``; returns the installed model."""
    from embedserve.store.create import QUANTIZATIONS, create_model

    canon = store.resolve(name)
    if store.find(canon) is not None:
        raise InvalidInput(f"model '{canon}' already exists; remove it first or choose another name")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise InvalidInput(f"unsupported quantization {quantize!r}; choose one of: int8")
    config.check()
    base_model = store.get(base)
    torch, st = import_torch()
    from embedserve.config import cpu_quota

    torch.set_num_threads(threads or cpu_quota())
    _quiet_hub_bars()
    status = on_status or (lambda _msg: None)
    work = store.staging("create")
    try:
        status(f"loading {base_model.name} with sentence-transformers")
        torch.manual_seed(config.seed)  # a folder without a pooler gets one initialised here
        model = st.SentenceTransformer(str(base_model.folder), device="cpu")
        t0 = time.perf_counter()
        steps = [0]

        def step(s: Step) -> None:
            steps[0] = s.step
            if on_step is not None:
                on_step(s)

        losses = train(model, data, config, step)
        seconds = time.perf_counter() - t0
        out = work / "model"
        status(f"saving {out}")
        model.save(str(out))
        record = training_record(base_model, data, config, losses, steps[0], seconds)
        status(f"installing {canon}")
        return create_model(
            store, canon, source=Path(out), quantize=quantize or "fp32", training=record
        )
    finally:
        remove_tree(work)
