"""Shared fixtures: a small real Fashion-MNIST dataset artifact and a fine-tuned FP32 resnet18.

Built once per test session (about half a minute on 2 cores) and reused by every stage's tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
# datasets read from archives / object storage are cached per test session, not in the user's ~/.cache
os.environ.setdefault("VC_CACHE_DIR", __import__("tempfile").mkdtemp(prefix="vc-test-cache-"))

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
    # seed 0: the split the thresholds in tests/README.md were measured on
    prepare_dataset(DataConfig(insize=32, max_train_samples=4000, max_test_samples=1000, calibration_samples=256,
                               seed=0), path)
    return path


@pytest.fixture(scope="session")
def fp32_model_dir(dataset_dir, tmp_path_factory) -> Path:
    """resnet18 fine-tuned for one epoch by our own fine-tune stage."""
    path = tmp_path_factory.mktemp("models") / "fp32"
    finetune(dataset_dir, path, ModelConfig(model="resnet18"),
             TrainConfig(batch_size=64, finetune_epochs=1, learning_rate=0.002))
    return path


# The detection fixture: fcos_resnet18_fpn from scratch on the offline detection set at 96 px (at 64 px the
# same compute gives half the mAP: the coarse FPN levels are 1x1 there). Trained well past the 100-iteration
# warm-up so that its mAP is far above what a model that learned nothing scores (0.0); tests/README.md lists
# the measured values.
DETECTION_DATA = DataConfig(source="fashion-mnist-detection", insize=96, max_train_samples=320, max_test_samples=80,
                            calibration_samples=32, val_fraction=0.1, seed=0)
DETECTION_TRAIN = TrainConfig(batch_size=8, finetune_epochs=5, learning_rate=0.003)


@pytest.fixture(scope="session")
def detection_dataset_dir(tmp_path_factory) -> Path:
    """The offline detection set (Fashion-MNIST items on photographs) at 96x96: 288 train, 32 val, 80 test."""
    path = tmp_path_factory.mktemp("detection-data") / "dataset"
    prepare_dataset(DETECTION_DATA, path)
    return path


@pytest.fixture(scope="session")
def detection_train_config() -> TrainConfig:
    """How the detection fixture was trained (a distilled student is trained the same way to compare)."""
    return DETECTION_TRAIN


@pytest.fixture(scope="session")
def detection_model_dir(detection_dataset_dir, tmp_path_factory) -> Path:
    """fcos_resnet18_fpn trained for 5 epochs (180 iterations) by our own fine-tune stage, seeded."""
    path = tmp_path_factory.mktemp("detection-models") / "fp32"
    finetune(detection_dataset_dir, path, ModelConfig(model="fcos_resnet18_fpn"), DETECTION_TRAIN)
    return path


def cut_splits(source: Path, destination: Path, sizes: dict[str, int]) -> Path:
    """A copy of a dataset artifact whose splits keep their first images, ``sizes[split]`` of them (short
    training runs that check mechanics, not quality)."""
    import json
    import shutil

    import numpy as np

    from visioncompress.artifacts import read_dataset_manifest, write_dataset_manifest

    shutil.copytree(source, destination)
    manifest = read_dataset_manifest(destination)
    for split, n in sizes.items():
        with np.load(destination / f"{split}.npz", allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        if manifest.task == "detection":
            keep = arrays["box_image"] < n
            arrays = {"images": arrays["images"][:n],
                      **{key: arrays[key][keep] for key in ("boxes", "box_labels", "box_image")}}
            coco = json.loads((destination / f"{split}.json").read_text())
            ids = {image["id"] for image in coco["images"][:n]}
            coco["images"] = coco["images"][:n]
            coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in ids]
            (destination / f"{split}.json").write_text(json.dumps(coco))
        else:
            arrays = {key: value[:n] for key, value in arrays.items()}
        np.savez(destination / f"{split}.npz", **arrays)
        manifest.splits[split] = n
    write_dataset_manifest(destination, manifest)
    return destination


@pytest.fixture(scope="session")
def cut_split():
    return cut_splits


@pytest.fixture(scope="session")
def detection_short_dataset_dir(detection_dataset_dir, tmp_path_factory) -> Path:
    """The detection set with 96 training images (12 batches): for stages whose tests check mechanics."""
    return cut_splits(detection_dataset_dir, tmp_path_factory.mktemp("detection-short") / "dataset", {"train": 96})
