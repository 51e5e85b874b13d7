"""Fine-tune stage: build or load a classifier, optionally train it, write an FP32 model artifact."""

from __future__ import annotations

import os

from visioncompress.artifacts import ModelMetadata, read_dataset_manifest
from visioncompress.config import ModelConfig, TrainConfig, to_spec
from visioncompress.data import load_dataset
from visioncompress.log import get_logger
from visioncompress.models import build_classifier, load_user_checkpoint, save_torch_model
from visioncompress.train.engine import ClassificationTask, TrainResult, evaluate_top1, fit

log = get_logger("finetune")


def initial_model(model_config: ModelConfig, num_classes: int, input_size: int):
    """The starting model: the user's checkpoint if given, else a torchvision model by name."""
    build = lambda: build_classifier(model_config.model, num_classes, pretrained=model_config.pretrained,  # noqa: E731
                                     input_size=input_size, platform=model_config.platform)
    if model_config.custom_model_path:
        return load_user_checkpoint(model_config.custom_model_path, build,
                                    trust_pickled_model=model_config.trust_pickled_model)
    return build()


def seed_everything(seed: int) -> None:
    """Seed torch, NumPy and Python's random (model construction and anything else drawing from them)."""
    import random

    import numpy as np
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def finetune(dataset_dir: str | os.PathLike, output_dir: str | os.PathLike, model_config: ModelConfig,
             train_config: TrainConfig, *, checkpoint_dir: str | os.PathLike | None = None) -> ModelMetadata:
    """Write the FP32 model artifact every compression stage starts from."""
    if read_dataset_manifest(dataset_dir).task == "detection":
        from visioncompress.detection.finetune import finetune_detector

        return finetune_detector(dataset_dir, output_dir, model_config, train_config, checkpoint_dir=checkpoint_dir)
    dataset = load_dataset(dataset_dir)
    manifest = dataset.manifest
    seed_everything(train_config.seed)  # the initial weights follow SEED, not whatever ran before
    model = initial_model(model_config, manifest.num_classes, manifest.input_size)
    result = TrainResult()
    if train_config.training and train_config.finetune_epochs > 0:
        log.info("fine-tuning %s for %d epoch(s) on %d images", model_config.model,
                 train_config.finetune_epochs, manifest.splits["train"])
        result = fit(model, ClassificationTask(dataset, train_config.criterion), train_config,
                     epochs=train_config.finetune_epochs, checkpoint_dir=checkpoint_dir, name="finetune")
    else:
        log.info("TRAINING is off: using %s as it is", model_config.custom_model_path or model_config.model)
    val_top1 = result.best_val_top1
    if val_top1 is None and manifest.splits.get("val"):
        val_top1 = round(evaluate_top1(model, dataset, "val"), 3)
    metadata = ModelMetadata(
        task=manifest.task, architecture=model_config.model, classes=manifest.classes,
        input_size=manifest.input_size, channels=manifest.channels, mean=manifest.mean, std=manifest.std,
        format="torch-module", precision="fp32", stage="finetune",
        params={**to_spec(model_config), **to_spec(train_config)},
        parent={"dataset": str(dataset_dir), "dataset_source": manifest.source},
        metrics={"val_top1": val_top1, "history": result.history},
    )
    metadata = save_torch_model(model, metadata, output_dir)
    log.info("FP32 model written to %s (val top-1 %s)", output_dir, val_top1)
    return metadata


__all__ = ["finetune", "initial_model"]
