"""Data preparation parameters."""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import check_choice, check_float, check_int, spec_field

DATA_SOURCES = ("fashion-mnist", "folder", "torchvision", "coco", "fashion-mnist-detection")
DETECTION_SOURCES = ("coco", "fashion-mnist-detection")


@dataclass
class DataConfig:
    source: str = spec_field("fashion-mnist", "DATASET_SOURCE",
                             help="classification: fashion-mnist (offline), folder (class-per-subfolder dir or archive), torchvision; detection: coco (COCO folder or archive), fashion-mnist-detection (offline: Fashion-MNIST items on photographs)")
    dataset_name: str = spec_field("", "DATASET_NAME", help="torchvision dataset class name, e.g. CIFAR10")
    path: str = spec_field("", "DATASET_PATH", help="local folder/archive, s3://bucket/key or minio://bucket/key, or download root for torchvision")
    insize: int = spec_field(32, "insize", help="square input size A (A x A)")
    val_fraction: float = spec_field(0.1, "VAL_FRACTION", help="share of training data held out for validation")
    calibration_samples: int = spec_field(512, "CALIBRATION_SAMPLES", help="calibration images drawn from training data")
    max_train_samples: int = spec_field(0, "MAX_TRAIN_SAMPLES", help="cap on training images (0 = all)")
    max_test_samples: int = spec_field(0, "MAX_TEST_SAMPLES", help="cap on test images (0 = all)")
    seed: int = spec_field(0, "SEED", help="seed for splits and sampling")

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
