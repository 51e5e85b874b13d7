"""Detection pruning stage (torchvision family): GroupFisher during training, then recovery."""

from __future__ import annotations

import os

from visioncompress.artifacts import ModelMetadata
from visioncompress.config import GroupFisherConfig, TrainConfig, to_spec
from visioncompress.detection.artifacts import load_detection_inputs
from visioncompress.detection.finetune import train_with
from visioncompress.detection.group_fisher import GroupFisherPruner, count_macs
from visioncompress.errors import ConfigError
from visioncompress.log import get_logger
from visioncompress.models import save_torch_model

log = get_logger("detection.prune")


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


class _PruningState:
    """What the pruning schedule has done so far: checkpointed with the model, so that a resumed run
    rebuilds the pruned structure (the recorded operations, replayed) and the Fisher scores."""

    def __init__(self, pruner: GroupFisherPruner, flops: float):
        self.pruner, self.flops, self.steps_done, self.finished_at = pruner, flops, 0, None

    def state_dict(self) -> dict:
        return {"record": [[name, list(idxs)] for name, idxs in self.pruner.record], "flops": float(self.flops),
                "steps_done": int(self.steps_done), "finished_at": self.finished_at,
                "fisher": self.pruner.fisher_state()}

    def load_state_dict(self, state: dict) -> None:
        self.pruner.replay(state["record"])
        self.pruner.load_fisher_state(state["fisher"])
        self.flops, self.steps_done, self.finished_at = state["flops"], state["steps_done"], state["finished_at"]
        if self.finished_at is not None:
            self.pruner.close()


def prune_detector(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, output_dir: str | os.PathLike,
                   config: GroupFisherConfig, train_config: TrainConfig, *,
                   checkpoint_dir: str | os.PathLike | None = None) -> ModelMetadata:
    from visioncompress.artifacts import read_model_metadata

    if read_model_metadata(model_dir).format == "mm-module":  # an OpenMMLab detector: GroupFisher in MMRazor
        from visioncompress.detection.mm.stage import prune_mm_stage

        return prune_mm_stage(model_dir, dataset_dir, output_dir, config, train_config)
    detector, parent, data = load_detection_inputs(model_dir, dataset_dir)
    per_epoch = max(1, data.manifest.splits["train"] // train_config.batch_size)
    total = per_epoch * config.epochs
    if config.interval > max(1, total // 2):
        raise ConfigError("INTERVAL", config.interval, f"at most {max(1, total // 2)}: pruning happens in the first "
                          f"half of the {total} training iterations ({config.epochs} epoch(s) of {per_epoch})")
    pruner = GroupFisherPruner(detector, parent.input_size, config.norm_type)
    flops_before, params_before = pruner.flops(), _params(detector)
    target = config.target_flop_ratio * flops_before
    pruning_steps = max(1, (total // 2) // config.interval)
    deadline = pruning_steps * config.interval
    state = _PruningState(pruner, flops_before)
    log.info("GroupFisher (%s): %.1f MMACs -> target %.1f MMACs (TARGET_FLOP_RATIO %s) over %d pruning steps, one "
             "every %d iterations, reached by iteration %d; %d prunable groups", config.norm_type, flops_before / 1e6,
             target / 1e6, config.target_flop_ratio, pruning_steps, config.interval, deadline, len(pruner.groups))

    def on_step(iteration: int, model) -> bool:
        if state.finished_at is not None or iteration % config.interval or iteration == 0:
            return False
        last = iteration >= deadline
        remaining_steps = max(1, pruning_steps - state.steps_done)
        removed = pruner.step((state.flops - target) / (1 if last else remaining_steps), deadline=last)
        state.flops -= removed
        state.steps_done += 1
        if state.flops <= target:
            state.finished_at = iteration
            pruner.close()
            log.info("target reached at iteration %d: %.1f MMACs (%.1f%% of the original)", iteration,
                     state.flops / 1e6, 100 * state.flops / flops_before)
        elif last:
            raise ConfigError("TARGET_FLOP_RATIO", config.target_flop_ratio,
                              f"a share this detector can reach: with every prunable group at its minimum width it "
                              f"keeps {state.flops / flops_before:.3f} of its FLOPs")
        elif state.steps_done % 10 == 0:
            log.info("pruning step %d: %.1f MMACs (%.1f%%)", state.steps_done, state.flops / 1e6,
                     100 * state.flops / flops_before)
        return removed > 0

    def lr_scale(iteration: int) -> float:
        return config.lr_ratio if state.finished_at is None else 1.0

    result = train_with(detector, data, train_config, epochs=config.epochs, learning_rate=train_config.learning_rate,
                        name="prune", on_step=on_step, lr_scale=lr_scale, warmup=False,
                        checkpoint_dir=checkpoint_dir, extras={"pruning": state})
    pruner.close()
    macs_after = count_macs(detector, parent.input_size)
    if macs_after > target * (1 + 1e-9):  # the schedule guarantees it; never write a model that misses it
        raise RuntimeError(f"GroupFisher ended at {macs_after / flops_before:.4f} of the FLOPs, above "
                           f"TARGET_FLOP_RATIO={config.target_flop_ratio}")
    metadata = parent.derive(
        stage="prune", precision="fp32", params={**to_spec(config), **to_spec(train_config)},
        parent={"model": str(model_dir), "stage": parent.stage, "format": parent.format},
        metrics={"flops_before": flops_before, "flops_after": macs_after, "params_before": params_before,
                 "params_after": _params(detector), "flop_ratio": round(macs_after / flops_before, 4),
                 "target_reached_at_iteration": state.finished_at, "pruning_steps": state.steps_done,
                 "val_mAP": result.best_val_map, "history": result.history},
    )
    metadata = save_torch_model(detector, metadata, output_dir)
    log.info("pruned detector written to %s: MACs %.1fM -> %.1fM, params %.2fM -> %.2fM, val mAP %s", output_dir,
             flops_before / 1e6, macs_after / 1e6, params_before / 1e6, _params(detector) / 1e6, result.best_val_map)
    return metadata

