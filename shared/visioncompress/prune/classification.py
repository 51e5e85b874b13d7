"""Structured pruning of classifiers with torch-pruning's dependency-graph pruners.

The spec's TARGET_PRUNE_RATE is a parameter reduction, while torch-pruning takes a channel
pruning ratio; the ratio is searched until the measured parameter reduction is within
``TOLERANCE`` of the target. Optional sparse training (SPARSITY_EPOCHS) with the pruner's
regulariser comes first, optional fine-tuning (TRAINING, FINETUNE_EPOCHS) after.

nyuntam's TorchPrune keys: ``SPARSITY`` (> 0) is torch-pruning's channel ratio itself, used without the
search; ``ITERATIVE`` prunes in ITERATIVE_STEPS steps with fine-tuning and a validation after each, and
stops after the first step whose val top-1 is more than ``MAX_DROP`` (a fraction: 0.2 = 20 points) below
the unpruned model's, as nyuntam's iterative pruning does.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from visioncompress.artifacts import ModelMetadata
from visioncompress.config import TrainConfig, to_spec
from visioncompress.config.prune import IMPORTANCES, PRUNERS, PruneConfig
from visioncompress.errors import ConfigError, VisionCompressError
from visioncompress.log import get_logger
from visioncompress.models import load_torch_module, save_torch_model
from visioncompress.quantize._common import load_inputs
from visioncompress.train.engine import ClassificationTask, TrainResult, evaluate_top1, fit
from visioncompress.train.losses import make_criterion

log = get_logger("prune")

TOLERANCE = 0.01  # accepted |measured parameter reduction - target|
MAX_TRIALS = 8
MAX_RATIO = 0.99
TAYLOR_BATCHES = 4  # calibration batches of 64 whose gradients GroupTaylorImportance ranks by


@dataclass
class PruneOutcome:
    model: object
    ratio: float
    reduction: float
    trials: list[dict] = field(default_factory=list)


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def classifier_layer(model):
    """The last Linear/Conv2d registered (torchvision registers the classifier last): its outputs must stay."""
    import torch.nn as nn

    last = None
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            last = module
    if last is None:
        raise ConfigError("MODEL", type(model).__name__, "a classifier built from nn.Linear / nn.Conv2d layers")
    return last


def _pruner_setup(model, config: PruneConfig) -> dict:
    """Keyword arguments for the torch-pruning pruner, built for this very model object."""
    import torch
    from torchvision.models.vision_transformer import MLPBlock, VisionTransformer

    from visioncompress.prune.attention import attention_modules

    ignored = [classifier_layer(model)]
    attention = attention_modules(model)
    kwargs: dict = {}
    if attention:
        kwargs["num_heads"] = {a.qkv: a.num_heads for a in attention}
        kwargs["prune_num_heads"] = config.prune_num_heads
        kwargs["prune_head_dims"] = not config.prune_num_heads
        if config.bottleneck:
            # Layers that write into the residual stream keep their width: only the MLP hidden
            # layers and the attention internals (heads or head dims) shrink.
            ignored += [a.proj for a in attention]
            ignored += [block[3] for block in model.modules() if isinstance(block, MLPBlock)]
            ignored += [m.conv_proj for m in model.modules() if isinstance(m, VisionTransformer)]
            # timm: the MLPs' output layers and the patch embedding
            ignored += [m.fc2 for m in model.modules() if type(m).__name__ == "Mlp" and hasattr(m, "fc2")]
            ignored += [m.patch_embed.proj for m in model.modules()
                        if hasattr(m, "patch_embed") and hasattr(m.patch_embed, "proj")]
    vits = [m for m in model.modules() if isinstance(m, VisionTransformer)]
    unwrapped = [(p, 2) for v in vits for p in (v.class_token, v.encoder.pos_embedding)]
    # timm ViTs: class/distillation/register tokens and position embeddings span the embedding width
    unwrapped += [(p, 2) for m in model.modules() if hasattr(m, "patch_embed")
                  for name in ("cls_token", "dist_token", "reg_token", "pos_embed")
                  if isinstance(p := getattr(m, name, None), torch.nn.Parameter)]
    if unwrapped:
        kwargs["unwrapped_parameters"] = unwrapped
    kwargs["ignored_layers"] = ignored
    if config.round_to > 1:
        kwargs["round_to"] = config.round_to
    return kwargs


def _importance(config: PruneConfig):
    import torch_pruning as tp

    name, kwargs = IMPORTANCES[config.group_importance]
    return getattr(tp.importance, name)(**kwargs)


def build_pruner(model, example, config: PruneConfig, ratio: float):
    import torch_pruning as tp

    from visioncompress.prune.attention import attention_modules

    kwargs = _pruner_setup(model, config)
    attention = attention_modules(model)
    if attention and config.prune_num_heads:
        # torch-pruning removes ceil(ratio * heads) per layer; keep at least one head.
        fewest = min(a.num_heads for a in attention)
        kwargs["head_pruning_ratio"] = min(ratio, (fewest - 1) / fewest - 1e-6)
    pruner_class = getattr(tp.pruner, PRUNERS[config.pruner_name])
    model.eval()
    return pruner_class(model, example, _importance(config), pruning_ratio=ratio,
                        iterative_steps=config.iterative_steps, **kwargs)


def _taylor_gradients(model, dataset, criterion) -> None:
    """Fill .grad with the loss gradient on calibration data (what GroupTaylorImportance reads)."""
    import torch

    model.eval()
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        for i, (x, y) in enumerate(dataset.torch_batches("calibration", 64)):
            if i == TAYLOR_BATCHES:
                break
            criterion(model(x), y).backward()


def prune_once(model, example, dataset, config: PruneConfig, ratio: float, criterion=None):
    """Prune ``model`` in place to channel ratio ``ratio`` over ITERATIVE_STEPS steps."""
    from visioncompress.prune.attention import sync_after_pruning

    pruner = build_pruner(model, example, config, ratio)
    for _ in range(config.iterative_steps):
        if config.group_importance == "GroupTaylorImportance":
            _taylor_gradients(model, dataset, criterion)
        pruner.step()
        sync_after_pruning(model, pruner.num_heads)  # the next step's gradients need a working forward
    model.zero_grad(set_to_none=True)
    return model


def _pruned_copy(model, example, dataset, config: PruneConfig, ratio: float, criterion):
    """A pruned copy of ``model`` at channel ratio ``ratio`` that has run a forward pass."""
    import torch

    try:
        candidate = prune_once(copy.deepcopy(model), example, dataset, config, ratio, criterion)
        with torch.inference_mode():
            candidate(example)
    except VisionCompressError:
        raise
    except Exception as exc:
        raise ConfigError("MODEL", type(model).__name__,
                          f"an architecture torch-pruning can prune structurally (the pruned model failed: "
                          f"{str(exc).splitlines()[0]})") from exc
    return candidate


def prune_to_target(model, example, dataset, config: PruneConfig, criterion=None) -> PruneOutcome:
    """Search the channel ratio whose pruning removes TARGET_PRUNE_RATE of the parameters, or of the MACs at the
    example's size with PRUNE_TARGET=macs (or use SPARSITY)."""
    target = config.target_prune_rate
    what = "MACs" if config.target == "macs" else "parameters"

    def size(m) -> int:
        return _ops_and_params(m, example)[0] if config.target == "macs" else count_params(m)

    size0 = size(model)
    lo, hi = (0.0, 0.0), (MAX_RATIO, None)  # (ratio, measured reduction)
    ratio = 1.0 - math.sqrt(1.0 - target)  # exact when every layer loses inputs and outputs alike
    best: PruneOutcome | None = None
    trials: list[dict] = []
    if config.sparsity:  # nyuntam's SPARSITY: the channel ratio itself, no search
        candidate = _pruned_copy(model, example, dataset, config, config.sparsity, criterion)
        reduction = 1.0 - size(candidate) / size0
        log.info("SPARSITY %.4f removes %.2f%% of %s", config.sparsity, 100 * reduction, what)
        return PruneOutcome(candidate, config.sparsity, reduction,
                            [{"ratio": config.sparsity, f"{config.target[:-1]}_reduction": round(reduction, 5)}])
    for _ in range(MAX_TRIALS):
        candidate = _pruned_copy(model, example, dataset, config, ratio, criterion)
        reduction = 1.0 - size(candidate) / size0
        trials.append({"ratio": round(ratio, 5), f"{config.target[:-1]}_reduction": round(reduction, 5)})
        log.info("pruning ratio %.4f removes %.2f%% of %s (target %.2f%%)", ratio, 100 * reduction, what,
                 100 * target)
        if best is None or abs(reduction - target) < abs(best.reduction - target):
            best = PruneOutcome(candidate, ratio, reduction)
        if abs(reduction - target) <= TOLERANCE:
            break
        if reduction < target:
            lo = (ratio, reduction)
        else:
            hi = (ratio, reduction)
        # Next guess from a power law 1 - reduction = (1 - ratio)^k through this point, kept inside the bracket.
        k = math.log(1.0 - reduction) / math.log(1.0 - ratio) if 0.0 < reduction < 1.0 else 2.0
        guess = 1.0 - (1.0 - target) ** (1.0 / max(k, 1e-3))
        ratio_next = guess if lo[0] < guess < hi[0] else (lo[0] + hi[0]) / 2
        if abs(ratio_next - ratio) < 1e-4 or hi[0] - lo[0] < 2e-3:
            break
        ratio = ratio_next
    best.trials = trials
    if abs(best.reduction - target) > TOLERANCE:
        log.warning("closest reachable reduction of %s is %.2f%% (target %.2f%%)", what, 100 * best.reduction,
                    100 * target)
    return best


def _ops_and_params(model, example) -> tuple[int, int]:
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def _save_pruned(path: Path, model, info: dict) -> None:
    """The pruned model as data (safetensors + module tree), its files' sha256 in info.json."""
    from visioncompress.artifacts import file_sha256, staged_output
    from visioncompress.models.safe_module import save_module

    with staged_output(path) as scratch:
        files = save_module(model, scratch, "model")
        info = {**info, "files": {name: file_sha256(scratch / name) for name in files}}
        (scratch / "info.json").write_text(json.dumps(info, indent=2) + "\n")


def _load_pruned(path: Path, key: dict):
    """The pruned model a killed run of the same stage saved, if it was made from the same inputs."""
    from visioncompress.artifacts import file_sha256
    from visioncompress.models.safe_module import load_module

    if not (path / "info.json").is_file():
        return None, None
    info = json.loads((path / "info.json").read_text())
    if info.get("key") != key:
        log.warning("ignoring %s: it was pruned from other inputs or parameters", path)
        return None, None
    files = info.get("files") or {}
    if not files or any(not (path / name).is_file() or file_sha256(path / name) != digest
                        for name, digest in files.items()):
        log.warning("ignoring %s: its files do not match the sha256 recorded in info.json", path)
        return None, None
    log.info("resuming from the pruned model in %s", path)
    return load_module(path, "model"), info


def sparse_train(model, example, dataset, config: PruneConfig, train_config: TrainConfig,
                 checkpoint_dir=None) -> TrainResult:
    """SPARSITY_EPOCHS of training with the pruner's group regulariser applied after every backward."""
    pruner = build_pruner(model, example, config, config.target_prune_rate)
    pruner.update_regularizer()
    # Without validation the loop keeps the last (sparsest) weights rather than the best-val ones.
    sparse_config = dataclasses.replace(train_config, validate=False)
    result = fit(model, ClassificationTask(dataset, sparse_config.criterion), sparse_config,
                 epochs=config.sparsity_epochs,
                   after_backward=lambda m: pruner.regularize(m), checkpoint_dir=checkpoint_dir, name="prune-sparse")
    model.zero_grad(set_to_none=True)
    return result


def _recovery(config: PruneConfig, dataset, train_config: TrainConfig, model_dir, distill_config=None):
    """The task (and companion modules) the fine-tune after pruning trains: plain cross-entropy, or with
    PRUNE_RECOVERY=distill the unpruned model as teacher (``kd_task``, DistillConfig's LAMBDA / TEMPERATURE)."""
    if config.recovery != "distill":
        return ClassificationTask(dataset, train_config.criterion), ()
    from visioncompress.config import DistillConfig, config_from
    from visioncompress.distill.classification import kd_task

    kd = distill_config or config_from(DistillConfig, {})
    log.info("recovering by distillation from the unpruned model (LAMBDA %s, TEMPERATURE %s)", kd.lambda_,
             kd.temperature)
    return kd_task(dataset, load_torch_module(model_dir), lambda_=kd.lambda_, temperature=kd.temperature)


def prune_iteratively(model, example, dataset, config: PruneConfig, train_config: TrainConfig, ratio: float,
                      val_before: float, criterion=None, recovery=None) -> tuple[list[dict], int | None]:
    """nyuntam's ITERATIVE pruning, in place: ITERATIVE_STEPS steps towards channel ratio ``ratio``, each
    followed by fine-tuning (TRAINING, FINETUNE_EPOCHS) and a validation; stops after the first step whose val
    top-1 is more than MAX_DROP (a fraction) below ``val_before``. Returns (per-step rows, the step it stopped at
    early or None)."""
    from visioncompress.prune.attention import sync_after_pruning

    pruner = build_pruner(model, example, config, ratio)
    params0 = count_params(model)
    rows: list[dict] = []
    for i in range(1, config.iterative_steps + 1):
        if config.group_importance == "GroupTaylorImportance":
            _taylor_gradients(model, dataset, criterion)
        pruner.step()
        sync_after_pruning(model, pruner.num_heads)
        model.zero_grad(set_to_none=True)
        row = {"step": i, "param_reduction": round(1 - count_params(model) / params0, 5)}
        if train_config.training and train_config.finetune_epochs > 0:
            task, companions = recovery or (ClassificationTask(dataset, train_config.criterion), ())
            result = fit(model, task, train_config, epochs=train_config.finetune_epochs, companions=companions,
                         name=f"prune-step{i}")
            row["history"] = result.history
        row["val_top1"] = round(evaluate_top1(model, dataset, "val"), 3)
        rows.append(row)
        drop = val_before - row["val_top1"]
        log.info("pruning step %d/%d: %.2f%% fewer parameters, val top-1 %.2f (%.2f points below unpruned)", i,
                 config.iterative_steps, 100 * row["param_reduction"], row["val_top1"], drop)
        if drop > 100 * config.max_drop:
            log.warning("pruning stopped after step %d/%d: val top-1 fell %.2f points, more than MAX_DROP=%g "
                        "(%.1f points)", i, config.iterative_steps, drop, config.max_drop, 100 * config.max_drop)
            return rows, i
    return rows, None


def prune(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, output_dir: str | os.PathLike,
          config: PruneConfig, train_config: TrainConfig, *,
          checkpoint_dir: str | os.PathLike | None = None, distill_config=None) -> ModelMetadata:
    """Prune the FP32 model in ``model_dir``; writes a torch-module artifact (``torch.load``-able).

    PRUNE_RECOVERY=distill: the fine-tune after pruning learns from the unpruned model too (``kd_task``, with
    ``distill_config``'s LAMBDA and TEMPERATURE; the spec's defaults when not given)."""
    import torch

    from visioncompress.prune.attention import convert_attention, head_counts

    model, parent, dataset = load_inputs(model_dir, dataset_dir)
    manifest = dataset.manifest
    torch.manual_seed(train_config.seed)
    example = torch.from_numpy(dataset.example_input(1))
    converted = convert_attention(model)
    if converted:
        log.info("converted %d nn.MultiheadAttention block(s) to fused-qkv attention for head pruning", converted)
    heads_before = head_counts(model)
    if config.bottleneck and not heads_before:
        log.info("BOTTLENECK applies to transformers; %s has no attention blocks", parent.architecture)
    macs_before, params_before = _ops_and_params(model, example)
    has_val = bool(manifest.splits.get("val"))
    val_before = round(evaluate_top1(model, dataset, "val"), 3) if has_val else None
    criterion = make_criterion(train_config.criterion, manifest.num_classes)

    recovery = _recovery(config, dataset, train_config, model_dir, distill_config)
    pruned_checkpoint = Path(checkpoint_dir) / "prune-pruned" if checkpoint_dir else None
    key = {"model": str(Path(model_dir).resolve()), **to_spec(config)}
    pruned, info = _load_pruned(pruned_checkpoint, key) if pruned_checkpoint else (None, None)
    steps = None
    if config.iterative and not has_val:
        raise ConfigError("ITERATIVE", True, "False for a dataset without a validation split (MAX_DROP is "
                          "checked on it after every pruning step)")
    if pruned is None:
        sparse = TrainResult()
        if config.sparsity_epochs:
            log.info("sparse training with %s for %d epoch(s)", config.pruner_name, config.sparsity_epochs)
            sparse = sparse_train(model, example, dataset, config, train_config, checkpoint_dir)
        # SPARSITY, or the channel ratio whose pruning (ITERATIVE_STEPS steps, no fine-tuning) meets the target.
        outcome = prune_to_target(model, example, dataset, config, criterion)
        info = {"pruning_ratio": round(outcome.ratio, 5), "search": outcome.trials, "sparsity_history": sparse.history,
                "key": key}
        if config.iterative:
            log.info("iterative pruning to channel ratio %.4f in %d step(s), MAX_DROP %g", outcome.ratio,
                     config.iterative_steps, config.max_drop)
            steps, stopped = prune_iteratively(model, example, dataset, config, train_config, outcome.ratio,
                                               val_before, criterion, recovery=recovery)
            pruned = model
            info.update(iterative_steps=steps, stopped_early_at_step=stopped)
        else:
            pruned = outcome.model
            if pruned_checkpoint:
                _save_pruned(pruned_checkpoint, pruned, info)
    del model
    macs_after, params_after = _ops_and_params(pruned, example)
    val_pruned = None if steps is not None else round(evaluate_top1(pruned, dataset, "val"), 3) if has_val else None
    log.info("params %d -> %d, MACs %d -> %d, val top-1 %s -> %s before fine-tuning", params_before, params_after,
             macs_before, macs_after, val_before, val_pruned)

    result = TrainResult()
    if steps is None and train_config.training and train_config.finetune_epochs > 0:  # ITERATIVE: done per step
        task, companions = recovery
        result = fit(pruned, task, train_config, epochs=train_config.finetune_epochs, companions=companions,
                     checkpoint_dir=checkpoint_dir, name="prune-finetune")
    val_top1 = result.best_val_top1
    if val_top1 is None and has_val:
        val_top1 = round(evaluate_top1(pruned, dataset, "val"), 3)

    metrics = {
        "val_top1": val_top1, "val_top1_before": val_before, "val_top1_pruned_before_finetune": val_pruned,
        "params_before": params_before, "params_after": params_after,
        "param_reduction": round(1 - params_after / params_before, 5),
        f"target_{config.target[:-1]}_reduction": config.target_prune_rate,
        "macs_before": macs_before, "macs_after": macs_after, "mac_reduction": round(1 - macs_after / macs_before, 5),
        "history": result.history, **{k: v for k, v in info.items() if k != "key"},
    }
    heads_after = head_counts(pruned)
    if heads_before:
        metrics.update(attention_heads_before=heads_before, attention_heads_after=heads_after)
    metadata = parent.derive(
        stage="prune", precision="fp32", format="torch-module",
        params={**to_spec(config), **to_spec(train_config)},
        parent={"model": str(Path(model_dir)), "stage": parent.stage, "format": parent.format,
                "dataset": str(dataset_dir)},
        metrics=metrics,
    )
    metadata = save_torch_model(pruned, metadata, output_dir)
    log.info("pruned model written to %s (%.1f%% fewer parameters, val top-1 %s)", output_dir,
             100 * metrics["param_reduction"], val_top1)
    return metadata


__all__ = ["count_params", "prune", "prune_once", "prune_to_target"]
