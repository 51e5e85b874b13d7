"""Detection dataset artifacts: COCO data (or the offline set) -> train/val/calibration/test splits.

Each split is ``<split>.npz`` (``images`` uint8 N x S x S x 3, ``labels`` = image index, and the
boxes flattened as ``boxes`` M x 4 xyxy, ``box_labels`` M, ``box_image`` M) plus ``<split>.json``,
the same ground truth in COCO form for pycocotools.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from visioncompress.artifacts import DatasetManifest, read_dataset_manifest, staged_output, write_dataset_manifest
from visioncompress.config import DataConfig
from visioncompress.data.sources import _unpack_if_archive
from visioncompress.detection.coco import CocoSplit, category_names, find_annotation_files, load_annotations, \
    read_split, to_coco
from visioncompress.errors import ArtifactError
from visioncompress.log import get_logger
from visioncompress.storage.s3 import is_remote, localized

if TYPE_CHECKING:
    import torch

log = get_logger("detection.data")

SYNTHETIC_TRAIN_IMAGES, SYNTHETIC_TEST_IMAGES = 2000, 500


def _subset(split: CocoSplit, index: np.ndarray) -> CocoSplit:
    return CocoSplit(split.images[index], [split.boxes[i] for i in index], [split.labels[i] for i in index],
                     [split.file_names[i] for i in index])


def _read_coco(root: Path, size: int) -> tuple[dict[str, CocoSplit], list[str], dict]:
    files = find_annotation_files(root)
    category_ids, classes = category_names(load_annotations(files["train"]))
    parts = {}
    for split in ("train", "test", "val"):
        if split in files and not (split == "val" and "test" in parts):
            key = "test" if split == "val" else split
            log.info("reading %s (%s)", files[split].name, key)
            parts[key] = read_split(root, files[split], split, size, category_ids)
    source = {"annotation_files": {k: str(v.relative_to(root)) for k, v in files.items()},
              "category_ids": category_ids}
    return parts, classes, source


def _split(parts: dict[str, CocoSplit], config: DataConfig) -> dict[str, CocoSplit]:
    rng = np.random.default_rng(config.seed)
    train = parts["train"]
    order = rng.permutation(len(train.images))
    test = parts.get("test")
    if test is None:
        n_test = max(1, len(order) // 5)
        test, order = _subset(train, order[:n_test]), order[n_test:]
    if config.max_test_samples and len(test.images) > config.max_test_samples:
        test = _subset(test, np.sort(rng.permutation(len(test.images))[: config.max_test_samples]))
    if config.max_train_samples:
        order = order[: config.max_train_samples]
    n_val = int(round(len(order) * config.val_fraction))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if len(train_idx) == 0:
        raise ArtifactError(f"DATASET_PATH={config.path!r}: no training images left after the validation split")
    if config.calibration_samples > len(train_idx):
        log.warning("CALIBRATION_SAMPLES=%d but the training split holds %d images: calibrating with all %d",
                    config.calibration_samples, len(train_idx), len(train_idx))
    return {"train": _subset(train, train_idx), "val": _subset(train, val_idx),
            "calibration": _subset(train, train_idx[: config.calibration_samples]), "test": test}


def _write_split(directory: Path, name: str, split: CocoSplit, classes: list[str], size: int) -> None:
    counts = [len(b) for b in split.boxes]
    np.savez(directory / f"{name}.npz", images=split.images, labels=np.arange(len(split.images), dtype=np.int64),
             boxes=np.concatenate(split.boxes).reshape(-1, 4) if split.boxes else np.zeros((0, 4), np.float32),
             box_labels=np.concatenate(split.labels) if split.labels else np.zeros((0,), np.int64),
             box_image=np.repeat(np.arange(len(counts)), counts).astype(np.int64))
    (directory / f"{name}.json").write_text(json.dumps(to_coco(split.boxes, split.labels, classes, size,
                                                               split.file_names)))


def _read(config: DataConfig, workdir: Path) -> tuple[dict[str, CocoSplit], list[str], dict]:
    if config.source == "fashion-mnist-detection":
        from visioncompress.detection.synthetic import write_synthetic_coco

        n_train = config.max_train_samples or SYNTHETIC_TRAIN_IMAGES
        n_test = config.max_test_samples or SYNTHETIC_TEST_IMAGES
        log.info("generating the offline detection set: %d train + %d test images", n_train, n_test)
        root = write_synthetic_coco(workdir / "synthetic", train_images=n_train, test_images=n_test,
                                    image_size=max(config.insize, 160), seed=config.seed,
                                    fashion_mnist_dir=config.path)
        parts, classes, source = _read_coco(root, config.insize)
        return parts, classes, {"name": "fashion-mnist-on-photos", **source}
    if is_remote(config.path):
        with localized(config.path) as local:
            parts, classes, source = _read(dataclasses.replace(config, path=str(local)), workdir)
        return parts, classes, {**source, "path": config.path}
    root = _unpack_if_archive(Path(config.path), workdir)
    parts, classes, source = _read_coco(root, config.insize)
    return parts, classes, {"name": "coco", "path": config.path, **source}


def prepare_detection_dataset(config: DataConfig, output_dir: str | os.PathLike) -> DatasetManifest:
    with tempfile.TemporaryDirectory() as tmp:
        parts, classes, source = _read(config, Path(tmp))
    splits = _split(parts, config)
    pixels = splits["train"].images.astype(np.float32) / 255.0
    manifest = DatasetManifest(
        task="detection", classes=classes, input_size=config.insize, channels=3, stored_channels=3,
        mean=[round(float(m), 6) for m in pixels.mean(axis=(0, 1, 2))],
        std=[round(max(float(s), 1e-6), 6) for s in pixels.std(axis=(0, 1, 2))],
        splits={name: len(split.images) for name, split in splits.items()},
        source={**source, "seed": config.seed, "val_fraction": config.val_fraction,
                "boxes": {name: int(sum(len(b) for b in split.boxes)) for name, split in splits.items()}},
    )
    with staged_output(output_dir) as scratch:
        for name, split in splits.items():
            _write_split(Path(scratch), name, split, classes, config.insize)
        write_dataset_manifest(scratch, manifest)
    log.info("detection dataset written to %s: %s images, %s boxes", output_dir, manifest.splits,
             manifest.source["boxes"])
    return manifest


@dataclass
class DetectionData:
    """A detection dataset artifact read back: float images in [0, 1] with torchvision-style targets."""

    directory: Path
    manifest: DatasetManifest

    def split(self, name: str) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        path = self.directory / f"{name}.npz"
        if not path.is_file():
            raise ArtifactError(f"dataset artifact {self.directory} has no split {name!r}")
        with np.load(path) as data:
            images, boxes, box_labels, box_image = (data[k] for k in ("images", "boxes", "box_labels", "box_image"))
        targets = [{"boxes": boxes[box_image == i], "labels": box_labels[box_image == i]} for i in range(len(images))]
        return images, targets

    def coco(self, name: str) -> dict:
        return json.loads((self.directory / f"{name}.json").read_text())

    def batches(self, name: str, batch_size: int, *, shuffle: bool = False, seed: int = 0, limit: int = 0,
                drop_last: bool = False) -> Iterator[tuple[torch.Tensor, list[dict]]]:
        import torch

        images, targets = self.split(name)
        order = np.random.default_rng(seed).permutation(len(images)) if shuffle else np.arange(len(images))
        if limit:
            order = order[:limit]
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            index = order[start:start + batch_size]
            x = torch.from_numpy(images[index]).permute(0, 3, 1, 2).float().div_(255.0)
            yield x, [{"boxes": torch.from_numpy(targets[i]["boxes"]), "labels": torch.from_numpy(targets[i]["labels"]),
                       "image_id": int(i) + 1} for i in index]


    def loader(self, name: str, batch_size: int, *, train: bool = False, seed: int = 0, epoch: int = 0,
               drop_last: bool = False, workers: int = 0, pin_memory: bool = False, rank: int = 0,
               world_size: int = 1, limit: int = 0):
        """The training engine's batches: (images float N x 3 x S x S in [0, 1], targets) of this rank's
        shard; ``train`` shuffles (order a function of seed and epoch)."""
        import torch

        from visioncompress.data.loaders import ShardedBatches

        def load(index_batches):
            images, targets = self.split(name)
            for index in index_batches:
                x = torch.from_numpy(images[index]).permute(0, 3, 1, 2).float().div_(255.0)
                yield x, [{"boxes": torch.from_numpy(targets[i]["boxes"]),
                           "labels": torch.from_numpy(targets[i]["labels"]), "image_id": int(i) + 1} for i in index]

        return ShardedBatches(int(self.manifest.splits.get(name, 0)), batch_size, load, train=train, seed=seed,
                              epoch=epoch, drop_last=drop_last, rank=rank, world_size=world_size, limit=limit)


def load_detection_dataset(directory: str | os.PathLike) -> DetectionData:
    manifest = read_dataset_manifest(directory)
    if manifest.task != "detection":
        raise ArtifactError(f"{directory} is a {manifest.task} dataset; this stage needs a detection dataset")
    return DetectionData(Path(directory), manifest)
