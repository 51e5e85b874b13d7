"""Registries, model building and the mmengine Runner both mm algorithms train with."""

from __future__ import annotations

import contextlib
import json
import math
import time
import uuid
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
    model = revert_sync_batchnorm(MODELS.build(ConfigDict(model_cfg)))
    with quiet():  # init_weights logs every parameter's initialiser
        model.init_weights()
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


def make_runner(model, info: CocoInfo, family: str, work_dir, *, lr: float, batch_size: int, insize: int,
                iters: int, per_epoch: int, hooks=()):
    register_all()
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    class EpochInfoHook(Hook):
        """Keep the message hub's epoch current under an iteration-based loop (mmyolo heads read it)."""

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            runner.message_hub.update_info("epoch", runner.iter // per_epoch)

    warmup = max(1, min(200, iters // 5))
    return Runner(
        model=model, work_dir=str(work_dir), experiment_name=f"vc_{uuid.uuid4().hex[:8]}",
        train_dataloader=train_dataloader(info, family, insize, batch_size),
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=iters),
        optim_wrapper=dict(type="OptimWrapper", clip_grad=dict(max_norm=35, norm_type=2),
                           optimizer=dict(type="SGD", lr=lr, momentum=0.9, weight_decay=1e-4)),
        param_scheduler=[dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=warmup)],
        default_hooks=dict(checkpoint=None, logger=dict(type="LoggerHook", interval=max(1, min(50, iters // 10)))),
        custom_hooks=[EpochInfoHook(), *hooks], default_scope=family, randomness=dict(seed=0),
        log_processor=dict(by_epoch=False), log_level="INFO")


def train(runner) -> float:
    """Run training; returns seconds per iteration."""
    start = time.perf_counter()
    runner.train()
    return (time.perf_counter() - start) / max(1, runner.iter)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))
