"""Model and fine-tuning parameters (the spec's common table)."""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import check_bool, check_float, check_int, spec_field
from visioncompress.errors import ConfigError


def optimizer_names() -> list[str]:
    import torch

    return sorted(
        name for name, obj in vars(torch.optim).items()
        if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer
    )


def criterion_names() -> list[str]:
    import torch

    return sorted(
        name for name, obj in vars(torch.nn).items()
        if isinstance(obj, type) and name.endswith("Loss") and issubclass(obj, torch.nn.Module)
    )


def canonical_criterion(value: str) -> str:
    """'MSE Loss' (the spec's spelling) and 'mseloss' both mean torch.nn.MSELoss."""
    wanted = str(value).replace(" ", "").replace("_", "").lower()
    for name in criterion_names():
        if name.lower() == wanted:
            return name
    raise ConfigError("CRITERION", value, criterion_names())


def canonical_optimizer(value: str) -> str:
    wanted = str(value).strip().lower()
    for name in optimizer_names():
        if name.lower() == wanted:
            return name
    raise ConfigError("OPTIMIZER", value, optimizer_names())


@dataclass
class ModelConfig:
    """Which model to start from."""

    model: str = spec_field("resnet18", "MODEL", help="torchvision classification model name")
    pretrained: bool = spec_field(False, "PRETRAINED", help="load ImageNet weights when no custom model is given")
    custom_model_path: str = spec_field("", "CUSTOM_MODEL_PATH",
                                        help="the starting model's weights: a state dict (.pt/.pth), safetensors, "
                                             "TorchScript, a torch.export program (.pt2) or a model artifact dir "
                                             "(local, s3:// or minio://)")
    trust_pickled_model: bool = spec_field(False, "TRUST_PICKLED_MODEL",
                                           help="also accept a whole pickled module as CUSTOM_MODEL_PATH / "
                                                "CUSTOM_TEACHER_PATH: loading it runs code from that file, so only "
                                                "for files whose author you trust")

    def __post_init__(self) -> None:
        from visioncompress.detection.zoo import detection_model_names
        from visioncompress.models.zoo import classification_model_names

        self.pretrained = check_bool("PRETRAINED", self.pretrained)
        self.trust_pickled_model = check_bool("TRUST_PICKLED_MODEL", self.trust_pickled_model)
        if not self.custom_model_path:
            names = classification_model_names()
            if self.model not in names and self.model not in detection_model_names():
                raise ConfigError("MODEL", self.model, "a torchvision classification model name, e.g. "
                                  + ", ".join(n for n in names if n in {"resnet18", "mobilenet_v2", "vgg16", "vit_b_16"})
                                  + ", or a detection model: " + ", ".join(detection_model_names()))


@dataclass
class TrainConfig:
    """Optional fine-tuning (TRAINING) with the spec's defaults."""

    training: bool = spec_field(True, "TRAINING", help="fine-tune before compression")
    validate: bool = spec_field(True, "VALIDATE", help="validate during fine-tuning")
    validation_interval: int = spec_field(1, "VALIDATION_INTERVAL", help="epochs between validations")
    criterion: str = spec_field("CrossEntropyLoss", "CRITERION", help="a torch.nn loss class name")
    learning_rate: float = spec_field(0.001, "LEARNING_RATE", help="fine-tuning learning rate")
    finetune_epochs: int = spec_field(1, "FINETUNE_EPOCHS", help="fine-tuning epochs")
    optimizer: str = spec_field("Adam", "OPTIMIZER", help="a torch.optim class name")
    batch_size: int = spec_field(1, "BATCH_SIZE", help="batch size")
    seed: int = spec_field(43, "SEED", help="random seed")

    def __post_init__(self) -> None:
        self.training = check_bool("TRAINING", self.training)
        self.validate = check_bool("VALIDATE", self.validate)
        self.validation_interval = check_int("VALIDATION_INTERVAL", self.validation_interval, minimum=1)
        self.learning_rate = check_float("LEARNING_RATE", self.learning_rate, low=0.0, low_open=True)
        self.finetune_epochs = check_int("FINETUNE_EPOCHS", self.finetune_epochs, minimum=0)
        self.batch_size = check_int("BATCH_SIZE", self.batch_size, minimum=1)
        self.seed = check_int("SEED", self.seed)
        self.criterion = canonical_criterion(self.criterion)
        self.optimizer = canonical_optimizer(self.optimizer)
