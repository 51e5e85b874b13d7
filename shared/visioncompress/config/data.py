"""Data preparation parameters."""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import check_choice, check_float, check_int, param

DATA_SOURCES = ("fashion-mnist", "folder", "torchvision", "coco", "fashion-mnist-detection")
DETECTION_SOURCES = ("coco", "fashion-mnist-detection")


@dataclass
class DataConfig:
    source: str = param('DATASET_SOURCE')
    dataset_name: str = param('DATASET_NAME')
    path: str = param('DATASET_PATH')
    insize: int = param('insize')
    val_fraction: float = param('VAL_FRACTION')
    calibration_samples: int = param('CALIBRATION_SAMPLES')
    max_train_samples: int = param('MAX_TRAIN_SAMPLES')
    max_test_samples: int = param('MAX_TEST_SAMPLES')
    seed: int = param('SEED')

    @property
    def task(self) -> str:
        return "detection" if self.source in DETECTION_SOURCES else "classification"

    def __post_init__(self) -> None:
        self.source = check_choice("DATASET_SOURCE", self.source, DATA_SOURCES)
        self.insize = check_int("insize", self.insize, minimum=8, maximum=1024)
        self.val_fraction = check_float("VAL_FRACTION", self.val_fraction, low=0.0, high=0.5, high_open=True)
        self.calibration_samples = check_int("CALIBRATION_SAMPLES", self.calibration_samples, minimum=1)
        self.max_train_samples = check_int("MAX_TRAIN_SAMPLES", self.max_train_samples, minimum=0)
        self.max_test_samples = check_int("MAX_TEST_SAMPLES", self.max_test_samples, minimum=0)
        self.seed = check_int("SEED", self.seed)
        if self.source in ("folder", "coco") and not self.path:
            from visioncompress.errors import ConfigError
            raise ConfigError("DATASET_PATH", self.path, f"a folder or archive path when DATASET_SOURCE='{self.source}'")
        if self.source == "torchvision" and not self.dataset_name:
            from visioncompress.errors import ConfigError
            raise ConfigError("DATASET_NAME", self.dataset_name,
                              "a torchvision dataset name (e.g. CIFAR10) when DATASET_SOURCE='torchvision'")
