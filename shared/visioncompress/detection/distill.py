"""Detection distillation stage (torchvision family): the student trains on its own detection
losses plus PKD or CWD between its FPN levels and the teacher's."""

from __future__ import annotations

import os

import torch

from visioncompress.artifacts import ModelMetadata, read_model_metadata
from visioncompress.config import ModelConfig, TrainConfig, to_spec
from visioncompress.config.distill import DistillConfig
from visioncompress.detection.data import DetectionData, load_detection_dataset
from visioncompress.detection.feature_kd import MIN_PKD_POSITIONS, FeatureDistiller, usable_level
from visioncompress.detection.finetune import initial_detector, train_with
from visioncompress.detection.heads import DetectorCore, family, losses
from visioncompress.detection.zoo import build_detector, detection_model_names
from visioncompress.errors import ArtifactError, ConfigError, TrainingError
from visioncompress.log import get_logger
from visioncompress.models import load_torch_module, load_user_checkpoint, save_torch_model
from visioncompress.train.engine import TrainResult, evaluate_map
from visioncompress.train.finetune import seed_everything

log = get_logger("detection.distill")
TORCHVISION_METHODS = ("pkd", "cwd")
FLOOR_MIN_TEACHER_MAP = 1.0  # below this the teacher's mAP is noise, and so is a floor derived from it


def check_method(method: str) -> None:
    if method not in TORCHVISION_METHODS:
        raise ConfigError("METHOD", method, "pkd or cwd for torchvision detectors (pkd_yolo distils a YOLO-style "
                          "neck and needs an MMYOLO model, the OpenMMLab family)")


def _teacher(config: DistillConfig, data: DetectionData, teacher_dir,
             trust_pickled_model: bool = False) -> tuple[torch.nn.Module, str]:
    manifest = data.manifest
    if teacher_dir is not None:
        metadata = read_model_metadata(teacher_dir)
        if metadata.num_classes != manifest.num_classes or metadata.input_size != manifest.input_size:
            raise ArtifactError(f"teacher {teacher_dir} ({metadata.num_classes} classes, {metadata.input_size}px) "
                                f"does not match the dataset ({manifest.num_classes}, {manifest.input_size}px)")
        return load_torch_module(teacher_dir), str(teacher_dir)
    if not config.custom_teacher_path and config.teacher_model not in detection_model_names():
        raise ConfigError("TEACHER_MODEL", config.teacher_model,
                          "a detection model for a detection dataset: " + ", ".join(detection_model_names()))

    def build():
        return build_detector(config.teacher_model, manifest.num_classes, manifest.input_size, manifest.mean,
                              manifest.std)

    if config.custom_teacher_path:
        return load_user_checkpoint(config.custom_teacher_path, build, parameter="CUSTOM_TEACHER_PATH",
                                    trust_pickled_model=trust_pickled_model), config.custom_teacher_path
    return build(), config.teacher_model


def _widths(detector, insize: int) -> list[int]:
    with torch.no_grad():
        return [f.shape[1] for f in DetectorCore(detector).eval().features(torch.zeros(1, 3, insize, insize))] \
            if family(detector) != "two-stage" else \
            [f.shape[1] for f in detector.backbone(torch.zeros(1, 3, insize, insize)).values()]


def _shapes(detector, insize: int, batch_size: int) -> list[tuple[int, int, int, int]]:
    with torch.no_grad():
        maps = DetectorCore(detector).eval().features(torch.zeros(1, 3, insize, insize)) \
            if family(detector) != "two-stage" else \
            list(detector.backbone(torch.zeros(1, 3, insize, insize)).values())
    return [(batch_size, *f.shape[1:]) for f in maps]


def _teacher_features(teacher, images):
    with torch.no_grad():
        if family(teacher) == "two-stage":
            normalised = (images - images.new_tensor(teacher.transform.image_mean).view(1, -1, 1, 1)) / \
                images.new_tensor(teacher.transform.image_std).view(1, -1, 1, 1)
            return list(teacher.backbone(normalised).values())
        return DetectorCore(teacher).features(images)


def check_student_floor(result: TrainResult, teacher_map: float | None, share: float) -> None:
    """Refuse a student whose best validation mAP stays below ``share`` of the teacher's (MIN_STUDENT_SHARE)."""
    if not share or teacher_map is None or result.best_val_map is None:
        return
    if teacher_map < FLOOR_MIN_TEACHER_MAP:
        log.warning("MIN_STUDENT_SHARE not checked: the teacher's val mAP %s is below %s, too low to measure a "
                    "student against", teacher_map, FLOOR_MIN_TEACHER_MAP)
        return
    floor = share * teacher_map
    if result.best_val_map >= floor:
        return
    last = result.history[-1] if result.history else {}
    losses_text = ", ".join(f"{k[5:]} {v}" for k, v in last.items() if k.startswith("loss_"))
    raise TrainingError(
        f"the distilled student's best validation mAP is {result.best_val_map}, below the floor "
        f"MIN_STUDENT_SHARE={share} x teacher mAP {teacher_map} = {floor:.2f}; nothing was written. Last epoch's "
        f"losses: {losses_text}. A box-regression loss stuck near 1.0 means the student's box head died; more "
        f"epochs, a lower LR, or METHOD=cwd may help; MIN_STUDENT_SHARE=0 turns this check off")


def distill_detector(dataset_dir: str | os.PathLike, output_dir: str | os.PathLike, student_config: ModelConfig,
                     train_config: TrainConfig, config: DistillConfig, *, teacher_dir=None, checkpoint_dir=None,
                     finetune_teacher: bool | None = None) -> ModelMetadata:
    from visioncompress.models.zoo import MM_PLATFORMS

    if student_config.platform in MM_PLATFORMS:  # PKD / CWD / pkd_yolo through MMRazor
        from visioncompress.detection.mm.stage import distill_mm_stage

        return distill_mm_stage(dataset_dir, output_dir, student_config, train_config, config,
                                teacher_dir=teacher_dir)
    check_method(config.method)
    data = load_detection_dataset(dataset_dir)
    manifest, insize = data.manifest, data.manifest.input_size
    seed_everything(config.seed)  # teacher (when built by name) and student start from SEED
    teacher, teacher_source = _teacher(config, data, teacher_dir, student_config.trust_pickled_model)
    seed_everything(config.seed)
    student = initial_detector(student_config, data)
    student_widths, teacher_widths = _widths(student, insize), _widths(teacher, insize)
    if len(student_widths) != len(teacher_widths):
        raise ConfigError("TEACHER_MODEL", teacher_source, f"a teacher with as many feature levels as the student "
                          f"({len(student_widths)}); it has {len(teacher_widths)}")
    shapes = _shapes(student, insize, train_config.batch_size)
    used = [i for i, shape in enumerate(shapes) if usable_level(config.method, shape)]
    if not used:
        raise ConfigError("BATCH_SIZE", train_config.batch_size,
                          f"a batch large enough for {config.method.upper()} to measure feature statistics: at "
                          f"{insize}px the FPN levels are {[tuple(s[-2:]) for s in shapes]}, and PKD needs "
                          f"{MIN_PKD_POSITIONS} positions (batch x height x width) on at least one level")
    log.info("%s on FPN levels %s of %d (maps %s for a batch of %d; smaller maps carry no usable statistics)",
             config.method.upper(), used, len(shapes), [tuple(s[-2:]) for s in shapes], train_config.batch_size)
    if finetune_teacher is None:
        finetune_teacher = teacher_dir is None and train_config.training
    teacher_result = TrainResult()
    if finetune_teacher and train_config.finetune_epochs > 0:
        log.info("fine-tuning the teacher (%s) for %d epoch(s)", teacher_source, train_config.finetune_epochs)
        teacher_result = train_with(teacher, data, train_config, epochs=train_config.finetune_epochs,
                                    learning_rate=train_config.learning_rate, name="distill-teacher",
                                    checkpoint_dir=checkpoint_dir)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    teacher_map = evaluate_map(teacher, data, "val")["mAP"] if manifest.splits.get("val") else None
    distiller = FeatureDistiller(config.method, student_widths, teacher_widths)
    log.info("teacher %s: val mAP %s; distilling (%s over %d FPN levels) into %s for %d epoch(s) at LR %g",
             teacher_source, teacher_map, config.method.upper(), len(student_widths),
             student_config.custom_model_path or student_config.model, config.epochs, config.lr)

    def loss_fn(model, images, targets):
        detection, student_features = losses(model, images, targets, with_features=True)
        feature = distiller(student_features, _teacher_features(teacher, images))
        return {**detection, f"{config.method}_feature": feature}

    result = train_with(student, data, TrainConfig(**{**train_config.__dict__, "seed": config.seed}),
                        epochs=config.epochs, learning_rate=config.lr, name="distill", checkpoint_dir=checkpoint_dir,
                        loss_fn=loss_fn, extras={"distiller": distiller}, companions=(teacher,),
                        weight_decay=config.weight_decay)
    check_student_floor(result, teacher_map, config.min_student_share)
    metadata = ModelMetadata(
        task="detection", architecture=student_config.model, classes=manifest.classes, input_size=insize,
        channels=3, mean=manifest.mean, std=manifest.std, format="torch-module", precision="fp32", stage="distill",
        params={**to_spec(student_config), **to_spec(train_config), **to_spec(config)},
        parent={"dataset": str(dataset_dir), "dataset_source": manifest.source, "teacher": teacher_source},
        metrics={"val_mAP": result.best_val_map, "best_epoch": result.best_epoch, "history": result.history,
                 "teacher_val_mAP": teacher_map, "teacher_history": teacher_result.history,
                 "student_params": sum(p.numel() for p in student.parameters()),
                 "teacher_params": sum(p.numel() for p in teacher.parameters())},
    )
    metadata = save_torch_model(student, metadata, output_dir)
    log.info("distilled detector written to %s (val mAP %s, teacher %s)", output_dir, result.best_val_map, teacher_map)
    return metadata
