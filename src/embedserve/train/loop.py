"""The training loop: sentence-transformers' model and losses, driven by a plain torch loop.

What ``SentenceTransformer.fit`` did before v3, without its ``datasets``/``accelerate`` trainer:
shuffled mini-batches (a seeded generator), each column tokenised with the model's own tokenizer,
the loss's ``forward(features, labels)``, AdamW (weight decay 0.01 except biases and LayerNorm),
linear warm-up over the first 10 % of steps then linear decay, gradients clipped at norm 1.
``on_step`` sees every step (loss, progress) and may raise to stop: nothing is written here.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from embedserve.errors import TrainingError
from embedserve.train.data import TrainData

__all__ = ["Step", "TrainConfig", "train"]

TRAIN_MISSING = (
    "fine-tuning needs torch and sentence-transformers; pip install 'embedserve[train]'"
)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1
    batch_size: int = 16
    lr: float = 2e-5
    seed: int = 42
    warmup: float = 0.1  # fraction of the steps
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0

    def check(self) -> None:
        from embedserve.errors import InvalidInput

        if self.epochs < 1:
            raise InvalidInput(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise InvalidInput(f"--batch-size must be at least 1, got {self.batch_size}")
        if not (0.0 < self.lr < 1.0) or math.isnan(self.lr):
            raise InvalidInput(f"--lr must be between 0 and 1, got {self.lr}")


@dataclass(frozen=True)
class Step:
    step: int  # 1-based
    total: int
    epoch: int  # 1-based
    loss: float
    mean_loss: float  # over this epoch so far


def import_torch() -> tuple[Any, Any]:
    """``(torch, sentence_transformers)``, or a one-line TrainingError naming the extra."""
    try:
        import sentence_transformers
        import torch
    except ImportError:
        raise TrainingError(TRAIN_MISSING) from None
    return torch, sentence_transformers


def make_loss(model: Any, loss: str) -> Any:
    import_torch()
    try:  # sentence-transformers >= 5.3 moved them; the old path still works, with a warning
        from sentence_transformers.sentence_transformer import losses
    except ImportError:
        from sentence_transformers import losses  # type: ignore[no-redef]

    if loss == "cosine":
        return losses.CosineSimilarityLoss(model)
    return losses.MultipleNegativesRankingLoss(model)


def _features(model: Any, texts: list[str], device: Any) -> dict[str, Any]:
    """One column tokenised by the model's own input module (``preprocess`` from ST 5 on)."""
    prepare = getattr(model, "preprocess", None) or model.tokenize
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in prepare(texts).items()}


def _batches(n: int, size: int, rng: random.Random, drop_single: bool) -> list[list[int]]:
    order = list(range(n))
    rng.shuffle(order)
    out = [order[i : i + size] for i in range(0, n, size)]
    if drop_single and len(out) > 1 and len(out[-1]) == 1:
        out[-2].extend(out.pop())  # MNRL needs an in-batch negative
    return out


def train(
    model: Any,
    data: TrainData,
    config: TrainConfig,
    on_step: Callable[[Step], None] | None = None,
) -> list[float]:
    """Train ``model`` in place; returns each epoch's mean loss."""
    torch, _ = import_torch()
    config.check()
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    loss_model = make_loss(model, data.loss)
    mnrl = data.labels is None
    if mnrl and len(data) < 2:
        raise TrainingError("mnrl needs at least 2 pairs (the other pairs are the negatives)")
    per_epoch = len(_batches(len(data), config.batch_size, random.Random(0), mnrl))
    total = per_epoch * config.epochs
    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias")
    named = list(loss_model.named_parameters())
    groups = [
        {"params": [p for n, p in named if not any(x in n for x in no_decay)],
         "weight_decay": config.weight_decay},
        {"params": [p for n, p in named if any(x in n for x in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.lr)
    warmup = int(total * config.warmup)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    device = model.device
    loss_model.train()
    step = 0
    means = []
    for epoch in range(1, config.epochs + 1):
        running = 0.0
        for i, batch in enumerate(_batches(len(data), config.batch_size, rng, mnrl), 1):
            columns = list(zip(*(data.texts[j] for j in batch)))
            features = [_features(model, list(col), device) for col in columns]
            labels = (
                torch.tensor([data.labels[j] for j in batch], dtype=torch.float32, device=device)
                if data.labels is not None
                else None
            )
            loss = loss_model(features, labels)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainingError(f"the loss is {value} at step {step + 1}; try a lower --lr")
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(loss_model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            running += value
            if on_step is not None:
                on_step(Step(step, total, epoch, value, running / i))
        means.append(running / per_epoch)
    model.eval()
    return means
