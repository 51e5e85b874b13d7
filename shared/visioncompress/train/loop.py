"""The training loop shared by fine-tuning and the training-based compressions.

Progress is logged per epoch (and a few times inside long epochs); every epoch ends with a
checkpoint so that a killed stage resumes where it stopped; the best validation state is kept.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from visioncompress.config import TrainConfig
from visioncompress.data import PreparedDataset
from visioncompress.log import get_logger
from visioncompress.train.losses import make_criterion

log = get_logger("train")

LossFn = Callable[..., "object"]  # (model, images, labels) -> scalar loss tensor


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    best_val_top1: float | None = None
    best_epoch: int | None = None
    resumed_from_epoch: int = 0


def evaluate_top1(model, dataset: PreparedDataset, split: str = "val", batch_size: int = 256) -> float:
    import torch

    model.eval()
    correct = total = 0
    with torch.inference_mode():
        for x, y in dataset.torch_batches(split, batch_size):
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return 100.0 * correct / max(total, 1)


def make_optimizer(name: str, params, learning_rate: float, weight_decay: float = 0.0):
    import torch

    kwargs = {"lr": learning_rate}
    if weight_decay:
        kwargs["weight_decay"] = weight_decay
    return getattr(torch.optim, name)(params, **kwargs)


def train(model, dataset: PreparedDataset, config: TrainConfig, *, epochs: int, learning_rate: float | None = None,
          weight_decay: float = 0.0, loss_fn: LossFn | None = None, checkpoint_dir: str | os.PathLike | None = None,
          after_backward: Callable[[object], None] | None = None, name: str = "train",
          extras: dict | None = None) -> TrainResult:
    """Train ``model`` in place; on return it holds the best-validation weights (or the last).

    ``extras``: objects with state_dict/load_state_dict that the loss depends on (saved in and
    restored from the checkpoint with the model)."""
    import torch

    from visioncompress.train.checkpoint import TrainingCheckpoint

    torch.manual_seed(config.seed)
    if loss_fn is None:
        criterion = make_criterion(config.criterion, dataset.manifest.num_classes)
        loss_fn = lambda m, x, y: criterion(m(x), y)  # noqa: E731
    result, start_epoch, best_state = TrainResult(), 0, None
    checkpoint = TrainingCheckpoint(checkpoint_dir, name, model, extras)
    state = checkpoint.load()
    optimizer = make_optimizer(config.optimizer, model.parameters(), learning_rate or config.learning_rate, weight_decay)
    checkpoint.restore_optimizer(state, optimizer)
    if state is not None:
        best_state, start_epoch = state["best_state"], state["epoch"]
        result.history, result.best_val_top1 = state["history"], state["best_val_top1"]
        result.best_epoch, result.resumed_from_epoch = state["best_epoch"], start_epoch
    n_train = dataset.manifest.splits["train"]
    n_batches = max(1, n_train // config.batch_size)
    report_every = max(1, n_batches // 5)
    for epoch in range(start_epoch + 1, epochs + 1):
        model.train()
        started, loss_sum, seen = time.perf_counter(), 0.0, 0
        batches = dataset.torch_batches("train", config.batch_size, shuffle=True, seed=config.seed + epoch,
                                        drop_last=n_train >= config.batch_size)
        for step, (x, y) in enumerate(batches, 1):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, x, y)
            loss.backward()
            if after_backward is not None:
                after_backward(model)
            optimizer.step()
            loss_sum += loss.item() * len(y)
            seen += len(y)
            if step % report_every == 0 and step < n_batches:
                log.info("[%s] epoch %d/%d  step %d/%d  loss %.4f", name, epoch, epochs, step, n_batches, loss_sum / seen)
        row = {"epoch": epoch, "train_loss": round(loss_sum / max(seen, 1), 5),
               "seconds": round(time.perf_counter() - started, 1)}
        if config.validate and dataset.manifest.splits.get("val") and (
            epoch % config.validation_interval == 0 or epoch == epochs
        ):
            row["val_top1"] = round(evaluate_top1(model, dataset, "val"), 3)
            if result.best_val_top1 is None or row["val_top1"] > result.best_val_top1:
                result.best_val_top1, result.best_epoch = row["val_top1"], epoch
                best_state = copy.deepcopy(model.state_dict())
        result.history.append(row)
        log.info("[%s] epoch %d/%d  %s", name, epoch, epochs,
                 "  ".join(f"{k} {v}" for k, v in row.items() if k != "epoch"))
        checkpoint.save(epoch, optimizer, {"best_state": best_state, "best_val_top1": result.best_val_top1,
                                           "best_epoch": result.best_epoch, "history": result.history})
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result


def write_history(path: str | os.PathLike, result: TrainResult) -> None:
    Path(path).write_text(json.dumps({
        "history": result.history, "best_val_top1": result.best_val_top1, "best_epoch": result.best_epoch,
        "resumed_from_epoch": result.resumed_from_epoch,
    }, indent=2) + "\n")
