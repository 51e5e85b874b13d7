"""Data preparation stage: raw source -> dataset artifact with train/val/calibration/test splits."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from visioncompress.artifacts import DatasetManifest, staged_output, write_dataset_manifest
from visioncompress.config import DataConfig
from visioncompress.errors import ArtifactError
from visioncompress.data.sources import RawSplits, read_fashion_mnist, read_image_folder, read_torchvision
from visioncompress.log import get_logger
from visioncompress.storage.s3 import is_remote, localized

log = get_logger("data")


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (antialiased) resize of uint8 N x H x W x C images to size x size."""
    if images.shape[1:3] == (size, size):
        return images
    import torch
    import torch.nn.functional as F

    out = []
    for start in range(0, len(images), 4096):
        chunk = torch.from_numpy(images[start : start + 4096]).permute(0, 3, 1, 2).float()
        chunk = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(chunk.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out) if out else images.reshape(0, size, size, images.shape[-1])


def _read(config: DataConfig) -> RawSplits:
    if is_remote(config.path):  # s3:// or minio:// archive, image-folder prefix, or Fashion-MNIST files
        from visioncompress.storage.s3 import StorageError

        try:
            with localized(config.path) as local:
                raw = _read(dataclasses.replace(config, path=str(local)))
        except StorageError as exc:
            raise type(exc)(f"DATASET_PATH={config.path!r}: {exc}") from exc
        raw.description["path"] = config.path
        return raw
    if config.source == "fashion-mnist":
        return read_fashion_mnist(config.path)
    if config.source == "folder":
        return read_image_folder(config.path, config.insize)
    return read_torchvision(config.dataset_name, config.path, config.insize)


def check_raw(raw: RawSplits, where: str) -> None:
    """The data a reader returned, checked before anything is trained on it."""
    if len(raw.train_images) == 0:
        raise ArtifactError(f"DATASET_PATH={where!r}: the dataset holds no training images")
    if len(raw.classes) < 2:
        raise ArtifactError(f"DATASET_PATH={where!r}: a classification dataset needs at least two classes "
                            f"(found {len(raw.classes)}: {raw.classes})")
    for part, labels in (("train", raw.train_labels), ("test", raw.test_labels)):
        outside = labels[(labels < 0) | (labels >= len(raw.classes))] if len(labels) else labels
        if len(outside):
            raise ArtifactError(f"DATASET_PATH={where!r}: {len(outside)} {part} label(s) outside the "
                                f"{len(raw.classes)} classes (e.g. {int(outside[0])}); labels must be "
                                f"0..{len(raw.classes) - 1}")
    present = np.unique(raw.train_labels)
    if len(present) < 2:
        raise ArtifactError(f"DATASET_PATH={where!r}: every training image has the same label "
                            f"({raw.classes[int(present[0])]!r}); a classifier needs at least two classes")
    if len(raw.train_images) and min(raw.train_images.shape[1:3]) < 8:
        raise ArtifactError(f"DATASET_PATH={where!r}: images of {raw.train_images.shape[1:3]} pixels are too small")


def _split(raw: RawSplits, config: DataConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(config.seed)
    train_x, train_y = raw.train_images, raw.train_labels
    order = rng.permutation(len(train_x))
    test_x, test_y = raw.test_images, raw.test_labels
    if len(test_x) == 0:  # no test part given: hold 20% of the data back as the test split
        n_test = max(1, len(order) // 5)
        test_x, test_y = train_x[order[:n_test]], train_y[order[:n_test]]
        order = order[n_test:]
    if config.max_test_samples and len(test_x) > config.max_test_samples:
        keep = np.sort(rng.permutation(len(test_x))[: config.max_test_samples])
        test_x, test_y = test_x[keep], test_y[keep]
    if config.max_train_samples:
        order = order[: config.max_train_samples]
    n_val = int(round(len(order) * config.val_fraction))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if len(train_idx) == 0:
        raise ArtifactError(f"DATASET_PATH={config.path!r}: no training images left after the validation split "
                            f"({len(order)} image(s), VAL_FRACTION={config.val_fraction})")
    # Calibration comes from the training part only, never from validation or test.
    if config.calibration_samples > len(train_idx):
        log.warning("CALIBRATION_SAMPLES=%d but the training split holds %d images: calibrating with all %d",
                    config.calibration_samples, len(train_idx), len(train_idx))
    calib_idx = train_idx[: min(config.calibration_samples, len(train_idx))]
    return {
        "train": (train_x[train_idx], train_y[train_idx]),
        "val": (train_x[val_idx], train_y[val_idx]),
        "calibration": (train_x[calib_idx], train_y[calib_idx]),
        "test": (test_x, test_y),
    }


def prepare_dataset(config: DataConfig, output_dir: str | os.PathLike) -> DatasetManifest:
    """Read the configured source and write a dataset artifact to ``output_dir``."""
    if config.task == "detection":
        from visioncompress.detection.data import prepare_detection_dataset

        return prepare_detection_dataset(config, output_dir)
    log.info("reading %s", config.source if config.source != "torchvision" else config.dataset_name)
    raw = _read(config)
    check_raw(raw, config.path or config.source)
    if min(raw.train_images.shape[1:3]) < config.insize and config.source != "folder":  # folders warn per image
        log.warning("the source's images are %dx%d, smaller than insize=%d: they are upscaled",
                    raw.train_images.shape[2], raw.train_images.shape[1], config.insize)
    splits = _split(raw, config)
    splits = {name: (resize_images(x, config.insize), y) for name, (x, y) in splits.items()}
    train_x = splits["train"][0].astype(np.float32) / 255.0
    stored_channels = train_x.shape[-1]
    mean = train_x.mean(axis=(0, 1, 2)).tolist()
    std = train_x.std(axis=(0, 1, 2)).tolist()
    if stored_channels == 1:  # grey images are fed to models as 3 identical channels
        mean, std = mean * 3, std * 3
    manifest = DatasetManifest(
        task="classification",
        classes=raw.classes,
        input_size=config.insize,
        channels=3,
        stored_channels=stored_channels,
        mean=[round(m, 6) for m in mean],
        std=[round(max(s, 1e-6), 6) for s in std],
        splits={name: int(len(y)) for name, (_, y) in splits.items()},
        source={**raw.description, "seed": config.seed, "val_fraction": config.val_fraction},
    )
    with staged_output(output_dir) as scratch:
        for name, (images, labels) in splits.items():
            np.savez(Path(scratch) / f"{name}.npz", images=images, labels=labels)
        write_dataset_manifest(scratch, manifest)
    log.info("dataset written to %s: %s", output_dir, manifest.splits)
    return manifest
