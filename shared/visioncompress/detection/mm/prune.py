"""GroupFisher structured channel pruning of an mm detector (MMRazor).

Training runs at lr * LR_RATIO and removes the least important channel (by Fisher information,
normalised by activation memory or FLOPs) every INTERVAL iterations. Once the FLOPs fall to
TARGET_FLOP_RATIO of the original, pruning stops and the remaining iterations fine-tune at the full lr.
The pruned network is exported as a static model.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

from visioncompress.errors import ConfigError
from visioncompress.log import get_logger

from .configs import coco_info, load_model_config
from .evaluate import evaluate_splits
from .model import MMDetector, flops_params, load_weights, save_model
from .runner import TrainSettings, build_model, check_insize, check_positive, make_runner, quiet, total_iters, \
    train, write_json

log = get_logger(__name__)
NORM_TYPES = ("act", "flops")


def export_pruned(algorithm):
    """The static pruned detector (GroupFisherSubModel), ready to pickle."""
    from mmrazor.implementations.pruning.group_fisher import GroupFisherSubModel
    with quiet():
        model = GroupFisherSubModel(algorithm)
    model.__dict__.pop("init_weights", None)  # the export's per-instance init hook cannot be pickled
    return model


def _control_hook(algorithm, interval: int, target: float, insize: int, lr_ratio: float, base_flops: int):
    from mmengine.hooks import Hook

    class PruneControl(Hook):
        priority = "LOW"

        def __init__(self):
            self.ratio, self.reached_at = 1.0, None

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if self.reached_at is not None or runner.iter % interval:
                return
            # measured on a static copy: mmrazor's count on the dynamic ops overstates the savings
            self.ratio = flops_params(export_pruned(copy.deepcopy(algorithm)), insize)[0] / base_flops
            if self.ratio <= target:
                self.reached_at = runner.iter + 1
                algorithm.interval = 2 ** 62  # no more pruning steps
                for group in runner.optim_wrapper.optimizer.param_groups:
                    group["lr"] /= lr_ratio
                log.info("mm prune: FLOPs at %.4f of the original after %d iterations; fine-tuning at full lr",
                         self.ratio, self.reached_at)

    return PruneControl()


def prune_group_fisher_mm(config, checkpoint, data_root, work_dir, interval: int = 10, norm_type: str = "act",
                          lr_ratio: float = 0.1, target_flop_ratio: float = 0.5, epochs: int = 20,
                          batch_size: int = 8, insize: int = 320, max_iters: int | None = None,
                          settings: TrainSettings | None = None, platform: str = "") -> dict:
    """Prune config+checkpoint on data_root; writes model.pt (static pruned detector) and metrics.json.

    ``settings``: the user's optimizer, LR, schedule, workers, AMP, device and seed for the Runner (pruning runs
    at ``settings.lr * LR_RATIO``); without it, the config's own LR and this adapter's defaults."""
    interval = check_positive("INTERVAL", interval)
    norm_type = str(norm_type).lower()
    if norm_type not in NORM_TYPES:
        raise ConfigError("NORM_TYPE", norm_type, NORM_TYPES)
    if isinstance(target_flop_ratio, bool) or not isinstance(target_flop_ratio, (int, float)) \
            or not 0 < target_flop_ratio < 1:
        raise ConfigError("TARGET_FLOP_RATIO", target_flop_ratio, "a number in (0, 1)")
    if isinstance(lr_ratio, bool) or not isinstance(lr_ratio, (int, float)) or not 0 < lr_ratio <= 1 \
            or math.isnan(lr_ratio):
        raise ConfigError("LR_RATIO", lr_ratio, "a number in (0, 1]")
    epochs, batch_size = check_positive("EPOCHS", epochs), check_positive("batch_size", batch_size)
    insize = check_insize(insize)
    if max_iters is not None:
        max_iters = check_positive("max_iters", max_iters)
    info = coco_info(data_root)
    cfg = load_model_config(config, "config", len(info.classes), platform)
    settings = settings or TrainSettings(lr=cfg.lr)
    if checkpoint is not None and not Path(checkpoint).is_file():
        from visioncompress.errors import ArtifactError
        raise ArtifactError(f"checkpoint {checkpoint} does not exist")

    work_dir = Path(work_dir)
    model_cfg = copy.deepcopy(cfg.model)
    if "frozen_stages" in model_cfg.get("backbone", {}):
        model_cfg["backbone"]["frozen_stages"] = -1  # GroupFisher needs gradients in every stage
    model = build_model(model_cfg)
    if checkpoint is not None:
        load_weights(model, checkpoint)
    flops_before, params_before = flops_params(copy.deepcopy(model), insize)
    algorithm = build_model(dict(
        _scope_="mmrazor", type="GroupFisherAlgorithm", architecture=model, interval=interval,
        mutator=dict(type="GroupFisherChannelMutator",
                     parse_cfg=dict(type="ChannelAnalyzer", tracer_type="FxTracer",
                                    demo_input=(1, 3, insize, insize)),
                     channel_unit_cfg=dict(type="GroupFisherChannelUnit",
                                           default_args=dict(normalization_type=norm_type)))))
    iters, per_epoch = total_iters(info, batch_size, epochs, max_iters)
    control = _control_hook(algorithm, interval, target_flop_ratio, insize, lr_ratio, flops_before)
    log.info("mm prune %s (%s): target FLOPs ratio %.3f, %d iterations", cfg.path, norm_type,
             target_flop_ratio, iters)
    runner = make_runner(algorithm, info, cfg.family, work_dir / "mm",
                         settings=dataclasses.replace(settings, lr=settings.lr * lr_ratio),
                         batch_size=batch_size, insize=insize, iters=iters, per_epoch=per_epoch, hooks=[control])
    sec_per_iter = train(runner)

    pruned = export_pruned(algorithm)
    flops_after, params_after = flops_params(copy.deepcopy(pruned), insize)
    if control.reached_at is None:
        log.warning("mm prune: TARGET_FLOP_RATIO %.3f not reached in %d iterations (at %.4f); "
                    "raise EPOCHS or lower INTERVAL", target_flop_ratio, iters, flops_after / flops_before)
    wrapper = MMDetector(pruned, info.classes, insize, cfg.family, model_cfg)
    path = save_model(wrapper, work_dir / "model.pt")
    result = dict(model_path=str(path), config=cfg.path, norm_type=norm_type, interval=interval,
                  target_flop_ratio=target_flop_ratio, target_reached=control.reached_at is not None,
                  pruning_iterations=control.reached_at, iterations=runner.iter, seconds_per_iter=sec_per_iter,
                  flops_before=flops_before, flops_after=flops_after, params_before=params_before,
                  params_after=params_after, flop_ratio=flops_after / flops_before,
                  metrics=evaluate_splits(wrapper, data_root))
    write_json(work_dir / "metrics.json", result)
    return result
