"""The detection training loop: fine-tuning, QAT, distillation and pruning all run through it.

Per-epoch progress and validation mAP, a checkpoint after every epoch (a killed stage resumes
there), the best-validation weights kept. ``loss_fn`` returns the detector's loss dict (plus any
extra terms); ``on_step`` may change the model (pruning) and then returns True so that the
optimizer is rebuilt over the new parameters.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from visioncompress.detection.data import DetectionData
from visioncompress.detection.heads import losses, predict
from visioncompress.log import get_logger
from visioncompress.train.loop import make_optimizer

log = get_logger("detection.train")

WARMUP_ITERATIONS = 100  # detectors trained from scratch diverge without a short warm-up
MAX_GRAD_NORM = 10.0


@dataclass
class DetectionTrainResult:
    history: list[dict] = field(default_factory=list)
    best_val_map: float | None = None
    best_epoch: int | None = None
    resumed_from_epoch: int = 0


class _EagerRunner:
    def __init__(self, model):
        self.model = model

    def predict(self, batch):
        return predict(self.model, torch.as_tensor(batch))


def evaluate_map(model: torch.nn.Module, data: DetectionData, split: str = "test", limit: int = 0) -> dict[str, float]:
    from visioncompress.detection.benchmark import measure_map

    return measure_map(_EagerRunner(model), data, split=split, limit=limit)[0]


def _detector_loss(model, images, targets) -> dict[str, torch.Tensor]:
    return losses(model, images, targets)


def train_detector(model: torch.nn.Module, data: DetectionData, *, epochs: int, batch_size: int, learning_rate: float,
                   optimizer_name: str = "Adam", weight_decay: float = 0.0, seed: int = 0, validate: bool = True,
                   validation_interval: int = 1, loss_fn: Callable | None = None,
                   on_step: Callable[[int, torch.nn.Module], bool] | None = None,
                   lr_scale: Callable[[int], float] | None = None,
                   evaluate: Callable[[torch.nn.Module], float] | None = None, warmup: bool = True,
                   checkpoint_dir: str | os.PathLike | None = None, name: str = "train",
                   extras: dict | None = None) -> DetectionTrainResult:
    """Train in place; on return ``model`` holds the best-validation weights (or the last ones).

    ``extras``: objects with state_dict/load_state_dict that the loss or ``on_step`` depend on
    (distillation connectors and ramp, the pruner's structure); they are checkpointed with the
    model and restored before it."""
    from visioncompress.train.checkpoint import TrainingCheckpoint

    torch.manual_seed(seed)
    loss_fn = loss_fn or _detector_loss
    extra_modules = [m for m in (extras or {}).values() if isinstance(m, torch.nn.Module)]

    def new_optimizer():
        params = [p for p in model.parameters() if p.requires_grad]
        params += [p for m in extra_modules for p in m.parameters() if p.requires_grad]
        return make_optimizer(optimizer_name, params, learning_rate, weight_decay)

    result, start_epoch, best_state = DetectionTrainResult(), 0, None
    checkpoint = TrainingCheckpoint(checkpoint_dir, name, model, extras)
    state = checkpoint.load()
    optimizer = new_optimizer()
    checkpoint.restore_optimizer(state, optimizer)
    if state is not None:
        best_state, start_epoch, result.history = state["best_state"], state["epoch"], state["history"]
        result.best_val_map, result.best_epoch = state["best_val_map"], state["best_epoch"]
        result.resumed_from_epoch = start_epoch
    n_train = data.manifest.splits["train"]
    per_epoch = max(1, n_train // batch_size)
    report_every = max(1, per_epoch // 4)
    iteration = start_epoch * per_epoch
    for epoch in range(start_epoch + 1, epochs + 1):
        model.train()
        started, sums, seen = time.perf_counter(), {}, 0
        for step, (images, targets) in enumerate(data.batches("train", batch_size, shuffle=True, seed=seed + epoch,
                                                              drop_last=n_train >= batch_size), 1):
            iteration += 1
            if on_step is not None and on_step(iteration, model):
                optimizer = new_optimizer()
                model.train()
            scale = min(1.0, iteration / WARMUP_ITERATIONS) if warmup else 1.0
            scale *= lr_scale(iteration) if lr_scale else 1.0
            for group in optimizer.param_groups:
                group["lr"] = learning_rate * scale
            loss_terms = loss_fn(model, images, targets)
            loss = sum(loss_terms.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], MAX_GRAD_NORM)
            optimizer.step()
            seen += 1
            for key, value in loss_terms.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            if step % report_every == 0 and step < per_epoch:
                log.info("[%s] epoch %d/%d  step %d/%d  loss %.4f", name, epoch, epochs, step, per_epoch,
                         sum(sums.values()) / seen)
        row = {"epoch": epoch, "loss": round(sum(sums.values()) / max(seen, 1), 4),
               **{f"loss_{k}": round(v / max(seen, 1), 4) for k, v in sums.items()},
               "seconds": round(time.perf_counter() - started, 1)}
        if validate and data.manifest.splits.get("val") and (epoch % validation_interval == 0 or epoch == epochs):
            row["val_mAP"] = evaluate(model) if evaluate else evaluate_map(model, data, "val")["mAP"]
            # A model that changes shape while training (pruning) keeps its last state instead.
            if on_step is None and (result.best_val_map is None or row["val_mAP"] >= result.best_val_map):
                result.best_val_map, result.best_epoch = row["val_mAP"], epoch
                best_state = copy.deepcopy(model.state_dict())
        result.history.append(row)
        log.info("[%s] epoch %d/%d  %s", name, epoch, epochs,
                 "  ".join(f"{k} {v}" for k, v in row.items() if k != "epoch"))
        checkpoint.save(epoch, optimizer, {"best_state": best_state, "best_val_map": result.best_val_map,
                                           "best_epoch": result.best_epoch, "history": result.history})
    if best_state is not None:
        model.load_state_dict(best_state)
    elif result.history and "val_mAP" in result.history[-1]:
        result.best_val_map, result.best_epoch = result.history[-1]["val_mAP"], result.history[-1]["epoch"]
    model.eval()
    return result
