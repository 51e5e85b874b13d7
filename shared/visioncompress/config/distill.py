"""Knowledge distillation parameters (the spec's table; classification uses all but METHOD)."""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import check_choice, check_float, check_int, param
from visioncompress.errors import ConfigError

DISTILL_METHODS = ("pkd", "cwd", "pkd_yolo")


@dataclass
class DistillConfig:
    teacher_model: str = param('TEACHER_MODEL')
    custom_teacher_path: str = param('CUSTOM_TEACHER_PATH')
    method: str = param('METHOD')
    epochs: int = param('EPOCHS')
    lr: float = param('LR')
    lambda_: float = param('LAMBDA')
    temperature: float = param('TEMPERATURE')
    seed: int = param('SEED')
    weight_decay: float = param('WEIGHT_DECAY')
    teacher_platform: str = param('TEACHER_PLATFORM')
    min_student_share: float = param('MIN_STUDENT_SHARE')

    def __post_init__(self) -> None:
        from visioncompress.detection.zoo import detection_model_names
        from visioncompress.models.zoo import classification_model_names

        self.custom_teacher_path = "" if self.custom_teacher_path is None else str(self.custom_teacher_path).strip()
        from visioncompress.config.train import check_platform

        from visioncompress.models.zoo import check_model_name, timm_model_names

        self.teacher_platform = "" if not self.teacher_platform else check_platform("TEACHER_PLATFORM",
                                                                                    self.teacher_platform)
        known = (*classification_model_names(), *detection_model_names())
        from visioncompress.models.zoo import MM_PLATFORMS, check_mm_model_name, is_mm_model_name

        if self.teacher_platform in MM_PLATFORMS:
            check_mm_model_name("TEACHER_MODEL", self.teacher_model, self.teacher_platform)
        elif not self.teacher_platform and self.teacher_model not in known and is_mm_model_name(self.teacher_model):
            pass  # an OpenMMLab config name: PLATFORM (mmdet / mmyolo) decides, the stage resolves it
        elif self.teacher_platform == "timm":
            check_model_name("TEACHER_MODEL", self.teacher_model, "timm")
        elif not self.teacher_platform and self.teacher_model not in known and self.teacher_model in timm_model_names():
            pass  # PLATFORM decides (the stage checks the name again against it)
        elif not self.custom_teacher_path and self.teacher_model not in known:
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
