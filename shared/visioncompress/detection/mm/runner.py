"""Registries, model building and the mmengine Runner both mm algorithms train with."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from visioncompress.errors import ConfigError

from .compat import mm_compat
from .configs import CocoInfo, train_dataloader

_registered = False


def register_all() -> None:
    global _registered
    mm_compat()
    if not _registered:
        import mmdet.utils
        import mmrazor.utils
        import mmyolo.utils
        mmdet.utils.register_all_modules(init_default_scope=False)
        mmyolo.utils.register_all_modules(init_default_scope=False)
        mmrazor.utils.register_all_modules(init_default_scope=False)
        import mmrazor.implementations.pruning.group_fisher  # noqa: F401  (registers GroupFisher)
        _registered = True


def build_model(model_cfg: dict):
    register_all()
    from mmengine.config import ConfigDict
    from mmengine.model import revert_sync_batchnorm
    from mmrazor.registry import MODELS
    # Modules handed in (an algorithm's architecture, a distiller's teacher) keep their weights: building the
    # algorithm converts their layers and init_weights would start them afresh (GroupFisher's loss went from
    # 1.1 to 92 on a loaded RetinaNet), so their state dicts are put back.
    import torch

    given = {k: copy.deepcopy(v.state_dict()) for k, v in model_cfg.items() if isinstance(v, torch.nn.Module)}
    model = revert_sync_batchnorm(MODELS.build(ConfigDict(model_cfg)))
    with quiet():  # init_weights logs every parameter's initialiser
        model.init_weights()
    for name, state in given.items():
        getattr(model, name).load_state_dict(state)
    return model


@contextlib.contextmanager
def quiet():
    """mmengine's INFO chatter (init tables, pruning structures) off for a block."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel("WARNING")
    try:
        yield
    finally:
        logger.setLevel(level)


def check_positive(name: str, value, kind=int, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum \
            or (kind is int and int(value) != value):
        raise ConfigError(name, value, f"{'an integer' if kind is int else 'a number'} >= {minimum}")
    return kind(value)


def check_insize(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 64 or value % 32:
        raise ConfigError("insize", value, "a multiple of 32, at least 64 (the detectors' largest stride)")
    return value


def total_iters(info: CocoInfo, batch_size: int, epochs: int, max_iters) -> tuple[int, int]:
    coco = json.loads(info.splits["train"].read_text())
    n = len({a["image_id"] for a in coco.get("annotations", [])})
    per_epoch = max(1, math.ceil(n / batch_size))
    total = per_epoch * epochs
    return (min(total, int(max_iters)) if max_iters else total), per_epoch


@dataclass
class TrainSettings:
    """The user's training settings, in the form the OpenMMLab Runner takes them (``from_train_config``
    maps the pipeline's TrainConfig). The defaults are this adapter's own, used when a library call gives none."""

    lr: float = 0.01
    optimizer: str = "SGD"
    weight_decay: float = 1e-4
    lr_scheduler: str = "none"        # none, step (x0.1 at 1/3 and 2/3 of training), cosine
    warmup_iters: int | None = None   # None: min(200, iterations / 5)
    workers: int | None = None        # DataLoader workers; None: by the CPUs this process may use
    pin_memory: bool = False
    amp: bool = False                 # mixed precision on CUDA (AmpOptimWrapper); ignored on a CPU
    device: str = "auto"              # auto, cpu, cuda, cuda:N
    seed: int = 0

    @classmethod
    def from_train_config(cls, config, *, lr: float | None = None, weight_decay: float | None = None,
                          per_epoch: int = 1) -> "TrainSettings":
        return cls(lr=float(config.learning_rate if lr is None else lr), optimizer=config.optimizer,
                   weight_decay=1e-4 if weight_decay is None else float(weight_decay),
                   lr_scheduler=config.lr_scheduler,
                   warmup_iters=config.lr_warmup_epochs * per_epoch if config.lr_warmup_epochs else None,
                   workers=config.workers, pin_memory=config.pin_mem, amp=config.amp, device=config.device,
                   seed=config.seed)

    def optim_wrapper(self, device: str) -> dict:
        from mmengine.registry import OPTIMIZERS
        register_all()
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("OPTIMIZER", self.optimizer, sorted(k for k in OPTIMIZERS.module_dict))
        optimizer = dict(type=self.optimizer, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer in ("SGD", "RMSprop"):
            optimizer["momentum"] = 0.9
        amp = self.amp and device.startswith("cuda")
        if self.amp and not amp:
            from visioncompress.log import get_logger
            get_logger(__name__).warning("AMP=True has no effect on a CPU: the OpenMMLab runner trains in FP32")
        return dict(type="AmpOptimWrapper" if amp else "OptimWrapper", optimizer=optimizer,
                    clip_grad=dict(max_norm=35, norm_type=2))

    def param_scheduler(self, iters: int) -> list[dict]:
        warmup = self.warmup_iters if self.warmup_iters is not None else min(200, iters // 5)
        warmup = min(warmup, iters) if warmup >= 2 else 0  # mmengine's LinearLR over 1 iteration never ends
        schedule = [dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=warmup)] if warmup else []
        if self.lr_scheduler == "step":
            schedule.append(dict(type="MultiStepLR", by_epoch=False, milestones=[iters // 3, 2 * iters // 3],
                                 gamma=0.1, begin=0, end=iters))
        elif self.lr_scheduler == "cosine":
            schedule.append(dict(type="CosineAnnealingLR", by_epoch=False, begin=warmup, end=iters,
                                 T_max=max(1, iters - warmup), eta_min=0.0))
        return schedule

    def resolved_device(self) -> str:
        from visioncompress.train.engine import resolve_device
        return str(resolve_device(self.device))


@contextlib.contextmanager
def on_device(device: str):
    """mmengine's Runner moves the model to ``get_device()`` (CUDA whenever there is one): DEVICE decides."""
    import mmengine.runner.runner as runner_module
    original = runner_module.get_device
    runner_module.get_device = lambda: device
    try:
        if device.startswith("cuda:"):
            import torch
            torch.cuda.set_device(device)
        yield
    finally:
        runner_module.get_device = original


def make_runner(model, info: CocoInfo, family: str, work_dir, *, settings: TrainSettings, batch_size: int,
                insize: int, iters: int, per_epoch: int, hooks=()):
    register_all()
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    class EpochInfoHook(Hook):
        """Keep the message hub's epoch current under an iteration-based loop (mmyolo heads read it)."""

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            runner.message_hub.update_info("epoch", runner.iter // per_epoch)

    device = settings.resolved_device()
    with on_device(device):
        runner = Runner(
            model=model, work_dir=str(work_dir), experiment_name=f"vc_{uuid.uuid4().hex[:8]}",
            train_dataloader=train_dataloader(info, family, insize, batch_size, workers=settings.workers,
                                              pin_memory=settings.pin_memory),
            train_cfg=dict(type="IterBasedTrainLoop", max_iters=iters),
            optim_wrapper=settings.optim_wrapper(device),
            param_scheduler=settings.param_scheduler(iters),
            default_hooks=dict(checkpoint=None,
                               logger=dict(type="LoggerHook", interval=max(1, min(50, iters // 10)))),
            custom_hooks=[EpochInfoHook(), *hooks], default_scope=family, randomness=dict(seed=settings.seed),
            log_processor=dict(by_epoch=False), log_level="INFO")
    runner.vc_device = device
    return runner


def train(runner) -> float:
    """Run training; returns seconds per iteration."""
    start = time.perf_counter()
    with on_device(getattr(runner, "vc_device", "cpu")):
        runner.train()
    return (time.perf_counter() - start) / max(1, runner.iter)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))
