"""Model and fine-tuning parameters (the spec's common table)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from visioncompress.config._fields import check_bool, check_choice, check_float, check_int, param
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


LR_SCHEDULERS = ("none", "step", "cosine")


def check_device(value: str) -> str:
    """auto, cpu, cuda or cuda:N (the form only: whether the device exists is checked before training)."""
    text = str(value).strip().lower()
    if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
        return text
    raise ConfigError("DEVICE", value, "auto, cpu, cuda or cuda:N")


def check_platform(parameter: str, value: str) -> str:
    from visioncompress.models.zoo import MM_PLATFORMS, PLATFORMS

    text = str(value or "torchvision").strip().lower()
    return check_choice(parameter, text, PLATFORMS + MM_PLATFORMS)


@dataclass
class ModelConfig:
    """Which model to start from."""

    model: str = param('MODEL')
    platform: str = param('PLATFORM')
    pretrained: bool = param('PRETRAINED')
    custom_model_path: str = param('CUSTOM_MODEL_PATH')
    trust_pickled_model: bool = param('TRUST_PICKLED_MODEL')

    def __post_init__(self) -> None:
        from visioncompress.detection.zoo import detection_model_names
        from visioncompress.models.zoo import classification_model_names

        self.pretrained = check_bool("PRETRAINED", self.pretrained)
        self.trust_pickled_model = check_bool("TRUST_PICKLED_MODEL", self.trust_pickled_model)
        self.platform = check_platform("PLATFORM", self.platform)
        from visioncompress.models.zoo import MM_PLATFORMS

        if self.platform in MM_PLATFORMS:
            from visioncompress.models.zoo import check_mm_model_name

            check_mm_model_name("MODEL", self.model, self.platform)
        elif self.platform == "timm":
            from visioncompress.models.zoo import check_model_name

            check_model_name("MODEL", self.model, "timm")
        elif not self.custom_model_path:
            names = classification_model_names()
            if self.model not in names and self.model not in detection_model_names():
                raise ConfigError("MODEL", self.model, "a torchvision classification model name, e.g. "
                                  + ", ".join(n for n in names if n in {"resnet18", "mobilenet_v2", "vgg16", "vit_b_16"})
                                  + ", or a detection model: " + ", ".join(detection_model_names())
                                  + " (or PLATFORM=timm with a timm model name)")


@dataclass
class TrainConfig:
    """Optional fine-tuning (TRAINING) with the spec's defaults."""

    training: bool = param('TRAINING')
    validate: bool = param('VALIDATE')
    validation_interval: int = param('VALIDATION_INTERVAL')
    criterion: str = param('CRITERION')
    learning_rate: float = param('LEARNING_RATE')
    finetune_epochs: int = param('FINETUNE_EPOCHS')
    optimizer: str = param('OPTIMIZER')
    batch_size: int = param('BATCH_SIZE')
    seed: int = param('SEED')
    device: str = param('DEVICE')
    amp: bool = param('AMP')
    num_processes: int = param('NUM_PROCESSES')
    workers: int = param('WORKERS')
    pin_mem: bool = param('PIN_MEM')
    lr_scheduler: str = param('LR_SCHEDULER')
    lr_warmup_epochs: int = param('LR_WARMUP_EPOCHS')
    checkpoint_uri: str = param('CHECKPOINT_URI')
    train_on_gpu: bool = param('TRAIN_ON_GPU')
    num_nodes: int = param('NUM_NODES')
    gpus_per_node: int = param('GPUS_PER_NODE')

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
        self.device = check_device(self.device)
        self.amp = check_bool("AMP", self.amp)
        self.num_processes = check_int("NUM_PROCESSES", self.num_processes, minimum=0)
        self.workers = check_int("WORKERS", self.workers, minimum=0)
        self.pin_mem = check_bool("PIN_MEM", self.pin_mem)
        self.lr_scheduler = check_choice("LR_SCHEDULER", self.lr_scheduler, LR_SCHEDULERS)
        self.lr_warmup_epochs = check_int("LR_WARMUP_EPOCHS", self.lr_warmup_epochs, minimum=0)
        self.checkpoint_uri = str(self.checkpoint_uri or "")
        self.train_on_gpu = check_bool("TRAIN_ON_GPU", self.train_on_gpu)
        self.num_nodes = check_int("NUM_NODES", self.num_nodes, minimum=1)
        self.gpus_per_node = check_int("GPUS_PER_NODE", self.gpus_per_node, minimum=1)
