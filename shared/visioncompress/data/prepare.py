"""Data preparation stage: raw source -> dataset artifact with train/val/calibration/test splits."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

import numpy as np

from visioncompress.artifacts import DatasetManifest, staged_output, write_dataset_manifest
from visioncompress.config import DataConfig
from visioncompress.errors import ArtifactError
from visioncompress.data.loaders import PreparedDataset
from visioncompress.data.sources import RawSplits, read_fashion_mnist, read_image_folder, read_torchvision
from visioncompress.log import get_logger
from visioncompress.storage.s3 import is_remote, localized

log = get_logger("data")


def _read(config: DataConfig) -> RawSplits:
    if config.source == "folder":  # folders, archives and s3:// / minio:// prefixes: file lists, fetched once
        return read_image_folder(config.path, config.insize)
    if is_remote(config.path):  # s3:// or minio:// Fashion-MNIST files
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
    if raw.storage == "arrays" and raw.min_side < 8:
        raise ArtifactError(f"DATASET_PATH={where!r}: images of {raw.train_images.shape[1:3]} pixels are too small")


def _split(raw: RawSplits, config: DataConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Index the reader's items (image arrays or file paths alike) into the four splits."""
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


NORMALISATION_SAMPLE = 5000  # training images (a seeded sample of them when there are more) behind mean/std


def pixel_statistics(image_at: Callable[[int], "object"], n: int, seed: int) -> tuple[list[float], list[float], dict]:
    """Per-channel mean and std (over pixels in [0, 1]) of up to NORMALISATION_SAMPLE images, accumulated one
    batch at a time (constant memory); ``image_at(i)`` returns image ``i`` as a uint8 C x S x S tensor."""
    from visioncompress.data.loaders import make_loader

    count = min(n, NORMALISATION_SAMPLE)
    loader = make_loader(image_at, _stack, n, 64, shuffle=count < n, seed=seed, limit=count)
    total = squares = None
    pixels = 0
    for batch in loader:
        x = batch.double().div_(255.0)
        s, q = x.sum(dim=(0, 2, 3)), x.square().sum(dim=(0, 2, 3))
        total, squares = (s, q) if total is None else (total + s, squares + q)
        pixels += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / pixels
    std = (squares / pixels - mean.square()).clamp_min(0).sqrt()
    how = {"images": count, "of": n, "sample": "all" if count == n else f"default_rng({seed}).permutation[:{count}]",
           "transform": "evaluation resize to insize"}
    return mean.tolist(), std.tolist(), how


def _stack(images: list):
    import torch

    return torch.stack(images)


def prepare_dataset(config: DataConfig, output_dir: str | os.PathLike) -> DatasetManifest:
    """Read the configured source and write a dataset artifact to ``output_dir``.

    Image folders (local, archives, ``s3://``/``minio://``) are stored as file lists + labels ("files" storage);
    Fashion-MNIST and torchvision sets as uint8 arrays at their own resolution ("arrays" storage). Nothing is
    resized here: batches are resized (and augmented for training) when they are read."""
    if config.task == "detection":
        from visioncompress.detection.data import prepare_detection_dataset

        return prepare_detection_dataset(config, output_dir)
    log.info("reading %s", config.source if config.source != "torchvision" else config.dataset_name)
    raw = _read(config)
    check_raw(raw, config.path or config.source)
    if raw.min_side < config.insize and config.source != "folder":  # folders warn per image
        log.warning("the source's images are %dx%d, smaller than insize=%d: they are upscaled",
                    raw.train_images.shape[2], raw.train_images.shape[1], config.insize)
    splits = _split(raw, config)
    stored_channels = 3 if raw.storage == "files" else int(raw.train_images.shape[-1])
    manifest = DatasetManifest(
        task="classification",
        classes=raw.classes,
        input_size=config.insize,
        channels=3,
        stored_channels=stored_channels,
        mean=[0.0] * 3,
        std=[1.0] * 3,
        splits={name: int(len(y)) for name, (_, y) in splits.items()},
        source={**raw.description, "seed": config.seed, "val_fraction": config.val_fraction},
        storage=raw.storage,
    )
    with staged_output(output_dir) as scratch:
        for name, (items, labels) in splits.items():
            key = "files" if raw.storage == "files" else "images"
            np.savez(Path(scratch) / f"{name}.npz", **{key: items, "labels": labels})
        dataset = PreparedDataset(Path(scratch), manifest)
        mean, std, how = pixel_statistics(lambda i: dataset.image("train", i), manifest.splits["train"], config.seed)
        if stored_channels == 1:  # grey images are fed to models as 3 identical channels
            mean, std = mean * 3, std * 3
        manifest.mean = [round(m, 6) for m in mean]
        manifest.std = [round(max(s, 1e-6), 6) for s in std]
        manifest.source["normalisation"] = how
        write_dataset_manifest(scratch, manifest)
    log.info("dataset written to %s (%s storage): %s", output_dir, manifest.storage, manifest.splits)
    return manifest
