"""The one training engine: every training stage of both tasks (fine-tune, QAT, distillation,
pruning's fine-tune, GroupFisher) trains through ``fit``.

What differs between tasks plugs in through ``Task``: the batches (the dataset's ``loader``), moving
a batch to the device, the loss (one tensor, or a dict of named terms) and the validation metric.
``ClassificationTask`` and ``DetectionTask`` are the two implementations.

The engine owns the rest: the device (DEVICE) and mixed precision (AMP: bf16 autocast where the GPU
has it, else fp16 with a GradScaler; off on CPU), torch.distributed data parallelism when the process
was started by torchrun (see ``visioncompress.train.launch``; every rank sees a disjoint shard, BATCH_SIZE
is the global batch), the learning-rate schedule (LR_SCHEDULER, LR_WARMUP_EPOCHS, or a task's default
warm-up in iterations, times an optional ``lr_scale`` hook), gradient clipping, hooks that may change
the model (``on_step`` -> the optimizer is rebuilt) or its gradients (``after_backward``), the best-
validation state, per-epoch history rows, progress logs a few times per epoch and a whole-state
checkpoint after every epoch (``visioncompress.train.checkpoint``). Only rank 0 logs and checkpoints.
On return the model is back on the CPU, so whatever follows (conversion, export, saving) is device-free.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

import torch
from torch import nn

from visioncompress.config import TrainConfig
from visioncompress.errors import ConfigError
from visioncompress.log import get_logger

log = get_logger("train")

DETECTION_WARMUP_ITERATIONS = 100  # detectors trained from scratch diverge without a short warm-up
DETECTION_MAX_GRAD_NORM = 10.0
EVAL_BATCH = 256


# ---- devices, processes ---------------------------------------------------------------------------------

def distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) of this process; (0, 1, 0) outside torch.distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return (torch.distributed.get_rank(), torch.distributed.get_world_size(),
                int(os.environ.get("LOCAL_RANK", "0")))
    return 0, 1, 0


def is_main_process() -> bool:
    return distributed()[0] == 0


def resolve_device(value: str = "auto") -> torch.device:
    """DEVICE as a torch.device; a CUDA device that is not there is a ConfigError naming DEVICE."""
    text = str(value).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("DEVICE", value, "cpu or auto: this node has no CUDA device (torch.cuda.is_available() "
                          "is False)")
    device = torch.device(text)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError("DEVICE", value, f"cuda:0 to cuda:{torch.cuda.device_count() - 1} (this node has "
                          f"{torch.cuda.device_count()} GPU(s))")
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def resolve_processes(config: TrainConfig) -> int:
    """NUM_PROCESSES resolved: 0 = one per visible GPU (1 on CPU); more processes than GPUs is a ConfigError."""
    device = resolve_device(config.device)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    wanted = config.num_processes or max(gpus, 1)
    if device.type == "cuda" and wanted > gpus:
        raise ConfigError("NUM_PROCESSES", config.num_processes,
                          f"at most {gpus}, the GPUs visible on this node (or 0 = one per GPU)")
    return wanted


def _process_device(config: TrainConfig) -> torch.device:
    device = resolve_device(config.device)
    _, world, local_rank = distributed()
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


@dataclass
class Precision:
    """Autocast dtype (None = full precision) and the fp16 loss scaler, for one device."""

    dtype: torch.dtype | None = None
    scaler: Any = None

    @classmethod
    def for_device(cls, device: torch.device, amp: bool) -> "Precision":
        if not amp or device.type != "cuda":
            return cls()
        if torch.cuda.is_bf16_supported():
            return cls(torch.bfloat16)
        return cls(torch.float16, torch.amp.GradScaler("cuda"))

    def autocast(self, device: torch.device):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)


# ---- the learning-rate schedule -------------------------------------------------------------------------

@dataclass
class LRSchedule:
    """The learning rate of iteration ``i`` (1-based): linear warm-up over ``warmup`` iterations, then
    none / step (x0.1 at 1/3 and 2/3 of the epochs) / cosine (to 0 at the end). A function of the
    iteration only, so it survives optimizer rebuilds; its state (the iteration) is checkpointed."""

    base_lr: float
    kind: str = "none"
    per_epoch: int = 1
    epochs: int = 1
    warmup: int = 0
    iteration: int = 0

    def factor(self, i: int) -> float:
        scale = min(1.0, i / self.warmup) if self.warmup else 1.0
        if self.kind == "step":
            epoch = (i - 1) // self.per_epoch
            scale *= 0.1 ** sum(epoch >= m for m in (self.epochs / 3, 2 * self.epochs / 3))
        elif self.kind == "cosine":
            span = max(1, self.per_epoch * self.epochs - self.warmup)
            progress = min(1.0, max(0.0, (i - 1 - self.warmup) / span))
            scale *= 0.5 * (1.0 + math.cos(math.pi * progress))
        return scale

    def state_dict(self) -> dict:
        return {"iteration": int(self.iteration)}

    def load_state_dict(self, state: dict) -> None:
        self.iteration = int(state["iteration"])


# ---- tasks ----------------------------------------------------------------------------------------------

class Task(Protocol):
    """What the engine needs to know about a task."""

    metric: str  # history key of the validation metric (higher is better)
    max_grad_norm: float | None  # gradient clipping, None = off
    warmup_iterations: int  # default warm-up when LR_WARMUP_EPOCHS is 0
    find_unused_parameters: bool  # DDP: the loss may leave parameters without gradients

    def train_size(self) -> int: ...

    def has_val(self) -> bool: ...

    def loader(self, split: str, batch_size: int, **kwargs) -> Iterable: ...

    def to_device(self, batch, device: torch.device): ...

    def batch_len(self, batch) -> int: ...

    def loss(self, model: nn.Module, batch) -> torch.Tensor | dict[str, torch.Tensor]: ...

    def evaluate(self, model: nn.Module, split: str = "val") -> float: ...


def _model_device(model: nn.Module) -> torch.device:
    tensor = next(iter(model.parameters()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def evaluate_top1(model: nn.Module, dataset, split: str = "val", batch_size: int = EVAL_BATCH) -> float:
    """Top-1 accuracy in percent, on the device the model is on."""
    device = _model_device(model)
    model.eval()
    correct = total = 0
    with torch.inference_mode():
        for x, y in dataset.loader(split, batch_size):
            correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
            total += len(y)
    return 100.0 * correct / max(total, 1)


class _EagerDetector:
    """A torch detector as a benchmark runner: predictions made on its device, returned on the CPU."""

    def __init__(self, model: nn.Module):
        self.model, self.device = model, _model_device(model)

    def predict(self, batch):
        from visioncompress.detection.heads import predict

        out = predict(self.model, torch.as_tensor(batch).to(self.device))
        return [{k: v.cpu() for k, v in d.items()} for d in out]


def evaluate_map(model: nn.Module, data, split: str = "test", limit: int = 0) -> dict[str, float]:
    from visioncompress.detection.benchmark import measure_map

    return measure_map(_EagerDetector(model), data, split=split, limit=limit)[0]


@dataclass
class ClassificationTask:
    """Images -> class logits; CRITERION by default, or ``loss_fn(model, x, y)``; validation top-1."""

    dataset: Any  # visioncompress.data.PreparedDataset
    criterion: str = "CrossEntropyLoss"
    loss_fn: Callable | None = None
    metric: str = "val_top1"
    max_grad_norm: float | None = None
    warmup_iterations: int = 0
    find_unused_parameters: bool = False

    def __post_init__(self):
        if self.loss_fn is None:
            from visioncompress.train.losses import make_criterion

            criterion = make_criterion(self.criterion, self.dataset.manifest.num_classes)
            self.loss_fn = lambda m, x, y: criterion(m(x), y)

    def train_size(self) -> int:
        return int(self.dataset.manifest.splits["train"])

    def has_val(self) -> bool:
        return bool(self.dataset.manifest.splits.get("val"))

    def loader(self, split, batch_size, **kwargs):
        return self.dataset.loader(split, batch_size, **kwargs)

    def to_device(self, batch, device):
        x, y = batch
        if device.type == "cpu":
            return x, y
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def batch_len(self, batch) -> int:
        return len(batch[1])

    def loss(self, model, batch):
        return self.loss_fn(model, *batch)

    def evaluate(self, model, split="val") -> float:
        return round(evaluate_top1(model, self.dataset, split), 3)


@dataclass
class DetectionTask:
    """Images + box targets -> the detector's loss dict (or ``loss_fn(model, images, targets)``'s);
    validation COCO mAP (or ``evaluate(model)``); 100 iterations of warm-up and clipping at norm 10."""

    data: Any  # visioncompress.detection.data.DetectionData
    loss_fn: Callable | None = None
    evaluate_fn: Callable | None = None
    warmup: bool = True
    metric: str = "val_mAP"
    max_grad_norm: float | None = DETECTION_MAX_GRAD_NORM
    find_unused_parameters: bool = True

    @property
    def warmup_iterations(self) -> int:
        return DETECTION_WARMUP_ITERATIONS if self.warmup else 0

    def train_size(self) -> int:
        return int(self.data.manifest.splits["train"])

    def has_val(self) -> bool:
        return bool(self.data.manifest.splits.get("val"))

    def loader(self, split, batch_size, **kwargs):
        return self.data.loader(split, batch_size, **kwargs)

    def to_device(self, batch, device):
        images, targets = batch
        if device.type == "cpu":
            return images, targets
        return images.to(device, non_blocking=True), [
            {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]

    def batch_len(self, batch) -> int:
        return len(batch[1])

    def loss(self, model, batch):
        if self.loss_fn is not None:
            return self.loss_fn(model, *batch)
        from visioncompress.detection.heads import losses

        return losses(model, *batch)

    def evaluate(self, model, split="val") -> float:
        if self.evaluate_fn is not None:
            return self.evaluate_fn(model)
        return evaluate_map(model, self.data, split)["mAP"]


# ---- the loop -------------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    best_val: float | None = None
    best_epoch: int | None = None
    resumed_from_epoch: int = 0
    metric: str = "val"

    @property
    def best_val_top1(self) -> float | None:
        return self.best_val

    @property
    def best_val_map(self) -> float | None:
        return self.best_val


def make_optimizer(name: str, params, learning_rate: float, weight_decay: float = 0.0):
    kwargs = {"lr": learning_rate}
    if weight_decay:
        kwargs["weight_decay"] = weight_decay
    return getattr(torch.optim, name)(params, **kwargs)


class _Objective(nn.Module):
    """Model + trainable extras behind one forward that returns the loss, so that DDP sees every
    parameter the loss uses (a loss may call submodules directly, not the model's forward)."""

    def __init__(self, task: Task, model: nn.Module, extras: Sequence[nn.Module]):
        super().__init__()
        self.task, self.model, self.extras = task, model, nn.ModuleList(extras)

    def forward(self, batch):
        return self.task.loss(self.model, batch)


def _terms(loss) -> dict[str, torch.Tensor]:
    return loss if isinstance(loss, dict) else {"": loss}


def _cpu_state(module: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def fit(model: nn.Module, task: Task, config: TrainConfig, *, epochs: int, learning_rate: float | None = None,
        weight_decay: float = 0.0, name: str = "train", checkpoint_dir: str | os.PathLike | None = None,
        extras: dict | None = None, companions: Sequence[nn.Module] = (),
        after_backward: Callable[[nn.Module], None] | None = None,
        on_step: Callable[[int, nn.Module], bool] | None = None,
        lr_scale: Callable[[int], float] | None = None) -> TrainResult:
    """Train ``model`` in place for ``epochs``; on return it holds the best-validation weights (the last
    ones when ``on_step`` may change its shape, or without validation) and is on the CPU in eval mode.

    ``extras``: objects with state_dict/load_state_dict the loss or ``on_step`` depend on (distillation
    connectors, a pruning record), checkpointed with the model and restored before it; those that are
    modules train with it. ``companions``: modules the loss uses but does not train (a teacher): moved to
    the device with the model. ``after_backward(model)`` may edit gradients (sparsity regularisers);
    ``on_step(iteration, model)`` may change the model and returns True to rebuild the optimizer;
    ``lr_scale(iteration)`` multiplies the scheduled learning rate.
    """
    from visioncompress.train.checkpoint import TrainingCheckpoint

    rank, world, _ = distributed()
    if world > 1 and on_step is not None:
        raise ConfigError("NUM_PROCESSES", world, f"1 for {name}: it changes the model while training from "
                          "per-process statistics, which processes would not agree on")
    device = _process_device(config)
    precision = Precision.for_device(device, config.amp)
    main = rank == 0
    torch.manual_seed(config.seed)
    learning_rate = learning_rate or config.learning_rate
    extra_modules = [m for m in (extras or {}).values() if isinstance(m, nn.Module)]
    result, start_epoch, best_state = TrainResult(metric=task.metric), 0, None
    checkpoint = TrainingCheckpoint(checkpoint_dir, name, model, extras)
    state = checkpoint.load()  # on the CPU, before anything moves: extras may reshape the model
    for module in (model, *extra_modules, *companions):
        module.to(device)

    def new_optimizer():
        params = [p for m in (model, *extra_modules) for p in m.parameters() if p.requires_grad]
        return make_optimizer(config.optimizer, params, learning_rate, weight_decay)

    def wrap():
        if world == 1:
            return None
        objective = _Objective(task, model, extra_modules)
        return torch.nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=task.find_unused_parameters)

    rank_batch = max(1, config.batch_size // world)  # BATCH_SIZE is the global batch
    loader_args = dict(drop_last=task.train_size() >= config.batch_size, workers=config.workers,
                       pin_memory=config.pin_mem and device.type == "cuda", rank=rank, world_size=world)
    per_epoch = max(1, len(task.loader("train", rank_batch, train=True, seed=config.seed, epoch=1, **loader_args)))
    warmup = config.lr_warmup_epochs * per_epoch if config.lr_warmup_epochs else task.warmup_iterations
    schedule = LRSchedule(learning_rate, config.lr_scheduler, per_epoch, epochs, warmup)
    optimizer = new_optimizer()
    ddp = wrap()
    if state is not None:
        checkpoint.restore_optimizer(state, optimizer, schedule)
        if precision.scaler is not None and state.get("scaler"):
            precision.scaler.load_state_dict(state["scaler"])
        best_state, start_epoch, result.history = state["best_state"], state["epoch"], state["history"]
        result.best_val, result.best_epoch = state["best_val"], state["best_epoch"]
        result.resumed_from_epoch = start_epoch
        schedule.iteration = max(schedule.iteration, start_epoch * per_epoch)
    report_every = max(1, per_epoch // 4)
    keep_best = on_step is None
    for epoch in range(start_epoch + 1, epochs + 1):
        model.train()
        started, sums, seen = time.perf_counter(), {}, 0
        batches = task.loader("train", rank_batch, train=True, seed=config.seed, epoch=epoch, **loader_args)
        for step, batch in enumerate(batches, 1):
            schedule.iteration += 1
            if on_step is not None and on_step(schedule.iteration, model):
                optimizer = new_optimizer()
                model.train()
            lr = learning_rate * schedule.factor(schedule.iteration) * (lr_scale(schedule.iteration) if lr_scale else 1.0)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = task.to_device(batch, device)
            with precision.autocast(device):
                terms = _terms(ddp(batch) if ddp is not None else task.loss(model, batch))
                loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            if precision.scaler is not None:
                precision.scaler.scale(loss).backward()
                precision.scaler.unscale_(optimizer)
            else:
                loss.backward()
            if after_backward is not None:
                after_backward(model)
            if task.max_grad_norm:
                torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                               task.max_grad_norm)
            if precision.scaler is not None:
                precision.scaler.step(optimizer)
                precision.scaler.update()
            else:
                optimizer.step()
            n = task.batch_len(batch)
            seen += n
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach()) * n
            if main and step % report_every == 0 and step < per_epoch:
                log.info("[%s] epoch %d/%d  step %d/%d  loss %.4f  lr %.3g", name, epoch, epochs, step, per_epoch,
                         sum(sums.values()) / seen, lr)
        row = {"epoch": epoch, "loss": round(sum(sums.values()) / max(seen, 1), 5)}
        if len(sums) > 1:
            row.update({f"loss_{k}": round(v / max(seen, 1), 5) for k, v in sums.items()})
        row["seconds"] = round(time.perf_counter() - started, 1)
        if config.validate and task.has_val() and (epoch % config.validation_interval == 0 or epoch == epochs):
            row[task.metric] = task.evaluate(model)
            if keep_best and (result.best_val is None or row[task.metric] >= result.best_val):
                result.best_val, result.best_epoch = row[task.metric], epoch
                best_state = _cpu_state(model)
        result.history.append(row)
        if main:
            log.info("[%s] epoch %d/%d  %s", name, epoch, epochs,
                     "  ".join(f"{k} {v}" for k, v in row.items() if k != "epoch"))
            checkpoint.save(epoch, optimizer, {
                "best_state": best_state, "best_val": result.best_val, "best_epoch": result.best_epoch,
                "history": result.history,
                "scaler": precision.scaler.state_dict() if precision.scaler is not None else None,
            }, scheduler=schedule)
    for module in (model, *extra_modules, *companions):
        module.to("cpu")
    if best_state is not None:
        model.load_state_dict(best_state)
    elif result.history and task.metric in result.history[-1]:
        result.best_val, result.best_epoch = result.history[-1][task.metric], result.history[-1]["epoch"]
    model.eval()
    return result

