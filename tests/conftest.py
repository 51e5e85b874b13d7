"""Shared fixtures: a small real Fashion-MNIST dataset artifact and a fine-tuned FP32 resnet18.

Built once per test session (about half a minute on 2 cores) and reused by every stage's tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))

from visioncompress.config import DataConfig, ModelConfig, TrainConfig  # noqa: E402
from visioncompress.data import prepare_dataset  # noqa: E402
from visioncompress.data.sources import FASHION_MNIST_DIR  # noqa: E402
from visioncompress.train import finetune  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        raise pytest.UsageError("Fashion-MNIST is missing: apt-get install dataset-fashion-mnist (make setup does it)")


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory) -> Path:
    """Fashion-MNIST at 32x32: 4000 train (10% val), 256 calibration, 1000 test images."""
    path = tmp_path_factory.mktemp("data") / "dataset"
    prepare_dataset(DataConfig(insize=32, max_train_samples=4000, max_test_samples=1000, calibration_samples=256),
                    path)
    return path


@pytest.fixture(scope="session")
def fp32_model_dir(dataset_dir, tmp_path_factory) -> Path:
    """resnet18 fine-tuned for one epoch by our own fine-tune stage."""
    path = tmp_path_factory.mktemp("models") / "fp32"
    finetune(dataset_dir, path, ModelConfig(model="resnet18"),
             TrainConfig(batch_size=64, finetune_epochs=1, learning_rate=0.002))
    return path


@pytest.fixture(scope="session")
def detection_dataset_dir(tmp_path_factory) -> Path:
    """The offline detection set (Fashion-MNIST items on photographs) at 64x64: 160 train, 40 test images."""
    path = tmp_path_factory.mktemp("detection-data") / "dataset"
    prepare_dataset(DataConfig(source="fashion-mnist-detection", insize=64, max_train_samples=160,
                               max_test_samples=40, calibration_samples=32, val_fraction=0.1), path)
    return path


@pytest.fixture(scope="session")
def detection_model_dir(detection_dataset_dir, tmp_path_factory) -> Path:
    """fcos_resnet18_fpn trained for two epochs by our own fine-tune stage (mAP is low; the tests compare
    stages against it, not against a fixed number)."""
    path = tmp_path_factory.mktemp("detection-models") / "fp32"
    finetune(detection_dataset_dir, path, ModelConfig(model="fcos_resnet18_fpn"),
             TrainConfig(batch_size=8, finetune_epochs=2, learning_rate=0.001))
    return path
