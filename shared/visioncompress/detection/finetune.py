"""Detection fine-tune stage: build or load a detector, optionally train it, write the FP32 artifact."""

from __future__ import annotations

import os

from visioncompress.artifacts import ModelMetadata
from visioncompress.config import ModelConfig, TrainConfig, to_spec
from visioncompress.detection.data import DetectionData, load_detection_dataset
from visioncompress.detection.zoo import build_detector, detection_model_names
from visioncompress.errors import ConfigError
from visioncompress.log import get_logger
from visioncompress.models import load_user_checkpoint, save_torch_model
from visioncompress.train.engine import DetectionTask, TrainResult, evaluate_map, fit

log = get_logger("detection.finetune")


def initial_detector(model_config: ModelConfig, data: DetectionData):
    manifest = data.manifest
    if model_config.platform != "torchvision":
        raise ConfigError("PLATFORM", model_config.platform, "torchvision, mmdet or mmyolo for a detection dataset")
    if not model_config.custom_model_path and model_config.model not in detection_model_names():
        raise ConfigError("MODEL", model_config.model, "a detection model for a detection dataset: "
                          + ", ".join(detection_model_names()))

    def build():
        return build_detector(model_config.model, manifest.num_classes, manifest.input_size, manifest.mean,
                              manifest.std, pretrained=model_config.pretrained)

    if model_config.custom_model_path:
        return load_user_checkpoint(model_config.custom_model_path, build,
                                    trust_pickled_model=model_config.trust_pickled_model)
    return build()


def train_with(model, data: DetectionData, train_config: TrainConfig, *, epochs: int, learning_rate: float,
               name: str, checkpoint_dir=None, loss_fn=None, evaluate=None, warmup: bool = True,
               **kwargs) -> TrainResult:
    """The engine with the detection task (its loss, mAP and default warm-up); ``kwargs`` go to ``fit``."""
    task = DetectionTask(data, loss_fn=loss_fn, evaluate_fn=evaluate, warmup=warmup)
    return fit(model, task, train_config, epochs=epochs, learning_rate=learning_rate, name=name,
               checkpoint_dir=checkpoint_dir, **kwargs)


def finetune_detector(dataset_dir: str | os.PathLike, output_dir: str | os.PathLike, model_config: ModelConfig,
                      train_config: TrainConfig, *, checkpoint_dir: str | os.PathLike | None = None) -> ModelMetadata:
    from visioncompress.models.zoo import MM_PLATFORMS

    if model_config.platform in MM_PLATFORMS:  # OpenMMLab detectors train in their own Runner
        from visioncompress.detection.mm.stage import finetune_mm

        return finetune_mm(dataset_dir, output_dir, model_config, train_config)
    data = load_detection_dataset(dataset_dir)
    manifest = data.manifest
    from visioncompress.train.finetune import seed_everything

    seed_everything(train_config.seed)  # the initial weights follow SEED, not whatever ran before
    model = initial_detector(model_config, data)
    result = TrainResult()
    if train_config.training and train_config.finetune_epochs > 0:
        log.info("fine-tuning %s for %d epoch(s) on %d images", model_config.model, train_config.finetune_epochs,
                 manifest.splits["train"])
        result = train_with(model, data, train_config, epochs=train_config.finetune_epochs,
                            learning_rate=train_config.learning_rate, name="finetune", checkpoint_dir=checkpoint_dir)
    else:
        log.info("TRAINING is off: using %s as it is", model_config.custom_model_path or model_config.model)
    val_map = result.best_val_map
    if val_map is None and manifest.splits.get("val"):
        val_map = evaluate_map(model, data, "val")["mAP"]
    metadata = ModelMetadata(
        task="detection", architecture=model_config.model, classes=manifest.classes,
        input_size=manifest.input_size, channels=3, mean=manifest.mean, std=manifest.std,
        format="torch-module", precision="fp32", stage="finetune",
        params={**to_spec(model_config), **to_spec(train_config)},
        parent={"dataset": str(dataset_dir), "dataset_source": manifest.source},
        metrics={"val_mAP": val_map, "history": result.history},
    )
    metadata = save_torch_model(model, metadata, output_dir)
    log.info("FP32 detector written to %s (val mAP %s)", output_dir, val_map)
    return metadata
