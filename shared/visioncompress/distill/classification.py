"""Knowledge distillation for classifiers: a student learns from labels and a teacher's soft targets.

loss = LAMBDA * CE(student, labels) + (1 - LAMBDA) * T^2 * KL(softmax(teacher / T) || softmax(student / T))
"""

from __future__ import annotations

import dataclasses
import os

from visioncompress.artifacts import ModelMetadata, read_model_metadata
from visioncompress.config import ModelConfig, TrainConfig, to_spec
from visioncompress.config.distill import DistillConfig
from visioncompress.data import PreparedDataset, load_dataset
from visioncompress.errors import ArtifactError, ConfigError
from visioncompress.log import get_logger
from visioncompress.models import build_classifier, load_torch_module, load_user_checkpoint, save_torch_model
from visioncompress.train.finetune import initial_model, seed_everything
from visioncompress.train.engine import ClassificationTask, TrainResult, evaluate_top1, fit

log = get_logger("distill")


def kd_loss(student_logits, teacher_logits, labels, *, lambda_: float, temperature: float):
    """Hinton et al.'s loss; the T^2 factor keeps the soft-target gradients on the CE term's scale."""
    import torch.nn.functional as F

    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)
    return lambda_ * F.cross_entropy(student_logits, labels) + (1.0 - lambda_) * soft


def kd_task(dataset: PreparedDataset, teacher, *, lambda_: float, temperature: float):
    """(the training task whose loss is ``kd_loss`` against the frozen ``teacher``, the companion modules the
    engine moves with the student): distillation, QAT distilled from FP32, pruning recovered from the unpruned
    model."""
    import torch

    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def loss_fn(model, x, y):
        with torch.no_grad():
            teacher_logits = teacher(x)
        return kd_loss(model(x), teacher_logits, y, lambda_=lambda_, temperature=temperature)

    return ClassificationTask(dataset, loss_fn=loss_fn), (teacher,)


def _load_teacher_checkpoint(config: DistillConfig, num_classes: int, input_size: int,
                             trust_pickled_model: bool = False, platform: str = "torchvision"):
    """CUSTOM_TEACHER_PATH (local, s3:// or minio://), with errors that name the teacher's parameters."""
    build = lambda: build_classifier(config.teacher_model, num_classes, input_size=input_size,  # noqa: E731
                                     platform=platform)
    try:
        return load_user_checkpoint(config.custom_teacher_path, build, parameter="CUSTOM_TEACHER_PATH",
                                    trust_pickled_model=trust_pickled_model)
    except ConfigError as exc:  # the architecture builder speaks of MODEL; here it is the teacher's
        if exc.parameter != "MODEL":
            raise
        raise ConfigError("TEACHER_MODEL", exc.value, exc.allowed) from exc


def load_teacher(config: DistillConfig, dataset: PreparedDataset, teacher_dir=None, *,
                 trust_pickled_model: bool = False, platform: str = "torchvision"):
    """The teacher and where it came from: a model artifact, CUSTOM_TEACHER_PATH, or TEACHER_MODEL by name.

    ``platform``: the student's PLATFORM, where TEACHER_MODEL comes from unless TEACHER_PLATFORM says."""
    from visioncompress.models.zoo import check_model_name

    manifest = dataset.manifest
    platform = config.teacher_platform or platform
    if teacher_dir is not None:
        metadata = read_model_metadata(teacher_dir)
        if metadata.num_classes != manifest.num_classes or metadata.input_size != manifest.input_size:
            raise ArtifactError(
                f"teacher {teacher_dir} ({metadata.num_classes} classes, {metadata.input_size}px) does not match "
                f"the dataset ({manifest.num_classes} classes, {manifest.input_size}px)")
        return load_torch_module(teacher_dir), str(teacher_dir)
    if config.custom_teacher_path:
        return (_load_teacher_checkpoint(config, manifest.num_classes, manifest.input_size, trust_pickled_model,
                                         platform), config.custom_teacher_path)
    check_model_name("TEACHER_MODEL", config.teacher_model, platform)
    return build_classifier(config.teacher_model, manifest.num_classes, input_size=manifest.input_size,
                            platform=platform), config.teacher_model


def _check_outputs(model, example, num_classes: int, parameter: str, value: str) -> None:
    """Run one batch so that a wrong class count or input size fails now, not mid-training."""
    import torch

    model.eval()
    try:
        with torch.inference_mode():
            logits = model(example)
    except Exception as exc:
        raise ConfigError(parameter, value, f"a model that accepts the dataset's images (it failed: "
                          f"{str(exc).splitlines()[0]})") from exc
    if not (hasattr(logits, "shape") and logits.ndim == 2 and logits.shape[1] == num_classes):
        shape = tuple(logits.shape) if hasattr(logits, "shape") else type(logits).__name__
        raise ConfigError(parameter, value, f"a classifier with {num_classes} outputs (the dataset's classes); "
                          f"it returns {shape}")


def distill(dataset_dir: str | os.PathLike, output_dir: str | os.PathLike, student_model_config: ModelConfig,
            train_config: TrainConfig, config: DistillConfig, *, teacher_dir: str | os.PathLike | None = None,
            checkpoint_dir: str | os.PathLike | None = None, finetune_teacher: bool | None = None) -> ModelMetadata:
    """Train the student (MODEL / CUSTOM_MODEL_PATH) against the teacher; writes the student's artifact.

    ``finetune_teacher`` defaults to TRAINING for a teacher from CUSTOM_TEACHER_PATH or TEACHER_MODEL,
    and to False for ``teacher_dir`` (a model artifact, already trained by its own stage).
    """
    import torch

    dataset = load_dataset(dataset_dir)
    manifest = dataset.manifest
    example = torch.from_numpy(dataset.example_input(2))
    teacher, teacher_source = load_teacher(config, dataset, teacher_dir,
                                           trust_pickled_model=student_model_config.trust_pickled_model,
                                           platform=student_model_config.platform)
    teacher_parameter = ("teacher" if teacher_dir is not None
                         else "CUSTOM_TEACHER_PATH" if config.custom_teacher_path else "TEACHER_MODEL")
    _check_outputs(teacher, example, manifest.num_classes, teacher_parameter, teacher_source)
    seed_everything(config.seed)  # the student's initial weights follow SEED
    student = initial_model(student_model_config, manifest.num_classes, manifest.input_size)
    student_source = student_model_config.custom_model_path or student_model_config.model
    _check_outputs(student, example, manifest.num_classes,
                   "CUSTOM_MODEL_PATH" if student_model_config.custom_model_path else "MODEL", student_source)
    if config.method != "pkd":
        log.info("METHOD=%s applies to detection only; classification uses logit distillation", config.method)

    if finetune_teacher is None:
        finetune_teacher = teacher_dir is None and train_config.training
    teacher_result = TrainResult()
    if finetune_teacher and train_config.finetune_epochs > 0:
        log.info("fine-tuning the teacher (%s) for %d epoch(s)", teacher_source, train_config.finetune_epochs)
        teacher_result = fit(teacher, ClassificationTask(dataset, train_config.criterion), train_config,
                             epochs=train_config.finetune_epochs,
                               checkpoint_dir=checkpoint_dir, name="distill-teacher")
    has_val = bool(manifest.splits.get("val"))
    task, companions = kd_task(dataset, teacher, lambda_=config.lambda_, temperature=config.temperature)
    teacher_val = round(evaluate_top1(teacher, dataset, "val"), 3) if has_val else None
    log.info("teacher %s: val top-1 %s", teacher_source, teacher_val)

    student_config = dataclasses.replace(train_config, seed=config.seed)
    log.info("distilling into %s for %d epoch(s) (LAMBDA %s, TEMPERATURE %s)", student_source, config.epochs,
             config.lambda_, config.temperature)
    result = fit(student, task, student_config, epochs=config.epochs,
                 learning_rate=config.lr, weight_decay=config.weight_decay, companions=companions,
                 checkpoint_dir=checkpoint_dir, name="distill")
    val_top1 = result.best_val_top1
    if val_top1 is None and has_val:
        val_top1 = round(evaluate_top1(student, dataset, "val"), 3)

    metadata = ModelMetadata(
        task=manifest.task, architecture=student_model_config.model, classes=manifest.classes,
        input_size=manifest.input_size, channels=manifest.channels, mean=manifest.mean, std=manifest.std,
        format="torch-module", precision="fp32", stage="distill",
        params={**to_spec(student_model_config), **to_spec(train_config), **to_spec(config)},
        parent={"dataset": str(dataset_dir), "dataset_source": manifest.source, "teacher": teacher_source},
        metrics={
            "val_top1": val_top1, "best_epoch": result.best_epoch, "history": result.history,
            "teacher_val_top1": teacher_val, "teacher_history": teacher_result.history,
            "student_params": sum(p.numel() for p in student.parameters()),
            "teacher_params": sum(p.numel() for p in teacher.parameters()),
        },
    )
    metadata = save_torch_model(student, metadata, output_dir)
    log.info("distilled student written to %s (val top-1 %s, teacher %s)", output_dir, val_top1, teacher_val)
    return metadata


__all__ = ["distill", "kd_loss", "kd_task", "load_teacher"]
