"""Knowledge distillation parameters (the spec's table; classification uses all but METHOD)."""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import check_choice, check_float, check_int, spec_field
from visioncompress.errors import ConfigError

DISTILL_METHODS = ("pkd", "cwd", "pkd_yolo")


@dataclass
class DistillConfig:
    teacher_model: str = spec_field("vgg16", "TEACHER_MODEL",
                                    help="torchvision name of the teacher (also the architecture a state_dict "
                                         "in CUSTOM_TEACHER_PATH is loaded into)")
    custom_teacher_path: str = spec_field("", "CUSTOM_TEACHER_PATH",
                                          help="the teacher as a .pt/.pth (state_dict or whole module) or a model "
                                               "artifact dir; empty: TEACHER_MODEL built by name")
    method: str = spec_field("pkd", "METHOD", help="detection distillation method: pkd, cwd (torchvision and "
                             "MMDetection detectors), pkd_yolo (MMYOLO); not used for classification")
    epochs: int = spec_field(20, "EPOCHS", help="distillation epochs")
    lr: float = spec_field(0.01, "LR", help="distillation learning rate")
    lambda_: float = spec_field(0.5, "LAMBDA", help="weight of cross entropy; 1 - LAMBDA weighs the KL term")
    temperature: float = spec_field(20, "TEMPERATURE", help="softmax temperature of the KL term")
    seed: int = spec_field(43, "SEED", help="random seed of the student's training")
    weight_decay: float = spec_field(0.0005, "WEIGHT_DECAY", help="weight decay during distillation")
    min_student_share: float = spec_field(
        0.25, "MIN_STUDENT_SHARE",
        help="detection: the distilled student's best validation mAP must reach this share of the teacher's "
             "(checked when the teacher has at least 1 mAP), else the stage fails rather than write a "
             "collapsed student; 0 turns the check off")

    def __post_init__(self) -> None:
        from visioncompress.detection.zoo import detection_model_names
        from visioncompress.models.zoo import classification_model_names

        self.custom_teacher_path = "" if self.custom_teacher_path is None else str(self.custom_teacher_path).strip()
        known = (*classification_model_names(), *detection_model_names())
        if not self.custom_teacher_path and self.teacher_model not in known:
            raise ConfigError("TEACHER_MODEL", self.teacher_model,
                              "a torchvision classification model name (e.g. vgg16, resnet50, resnet18) or a "
                              "detection model (e.g. fcos_resnet50_fpn, retinanet_resnet50_fpn)")
        self.method = check_choice("METHOD", self.method, DISTILL_METHODS)
        self.epochs = check_int("EPOCHS", self.epochs, minimum=1)
        self.lr = check_float("LR", self.lr, low=0.0, low_open=True)
        self.lambda_ = check_float("LAMBDA", self.lambda_, low=0.0, high=1.0)
        self.temperature = check_float("TEMPERATURE", self.temperature, low=0.0, low_open=True)
        self.seed = check_int("SEED", self.seed)
        self.weight_decay = check_float("WEIGHT_DECAY", self.weight_decay, low=0.0)
        self.min_student_share = check_float("MIN_STUDENT_SHARE", self.min_student_share, low=0.0, high=1.0)
