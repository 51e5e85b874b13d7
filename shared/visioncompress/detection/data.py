"""Detection dataset artifacts: COCO data (or the offline set) -> train/val/calibration/test splits.

Each split is ``<split>.npz`` plus ``<split>.json`` (its ground truth in COCO form at ``insize``, for
pycocotools). The npz holds the boxes in each image's own pixels (``boxes`` M x 4 xyxy, ``box_labels`` M,
``box_image`` M: the image index) and, by ``manifest.storage``, either the image files (``"files"``, COCO
sources: ``files`` relative to ``source["root"]``, ``sizes`` N x 2) or the images themselves (``"arrays"``, the
offline set: ``images`` uint8 N x H x W x 3 at the generated size). Images are resized to ``insize`` (and boxes
scaled) when read; training flips half of them, boxes included.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from visioncompress.artifacts import DatasetManifest, read_dataset_manifest, staged_output, write_dataset_manifest
from visioncompress.config import DataConfig
from visioncompress.detection.coco import CocoSplit, category_names, find_annotation_files, load_annotations, \
    read_split, to_coco
from visioncompress.errors import ArtifactError
from visioncompress.log import get_logger

if TYPE_CHECKING:
    import torch

log = get_logger("detection.data")

SYNTHETIC_TRAIN_IMAGES, SYNTHETIC_TEST_IMAGES = 2000, 500


def _read_coco(root: Path, size: int) -> tuple[dict[str, CocoSplit], list[str], dict]:
    files = find_annotation_files(root)
    category_ids, classes = category_names(load_annotations(files["train"]))
    parts = {}
    for split in ("train", "test", "val"):
        if split in files and not (split == "val" and "test" in parts):
            key = "test" if split == "val" else split
            log.info("reading %s (%s)", files[split].name, key)
            parts[key] = read_split(root, files[split], split, size, category_ids)
    source = {"annotation_files": {k: v.relative_to(root).as_posix() for k, v in files.items()},
              "category_ids": category_ids}
    return parts, classes, source


def _split(parts: dict[str, CocoSplit], config: DataConfig) -> dict[str, CocoSplit]:
    rng = np.random.default_rng(config.seed)
    train = parts["train"]
    order = rng.permutation(len(train.files))
    test = parts.get("test")
    if test is None:
        n_test = max(1, len(order) // 5)
        test, order = train.subset(order[:n_test]), order[n_test:]
    if config.max_test_samples and len(test.files) > config.max_test_samples:
        test = test.subset(np.sort(rng.permutation(len(test.files))[: config.max_test_samples]))
    if config.max_train_samples:
        order = order[: config.max_train_samples]
    n_val = int(round(len(order) * config.val_fraction))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if len(train_idx) == 0:
        raise ArtifactError(f"DATASET_PATH={config.path!r}: no training images left after the validation split")
    if config.calibration_samples > len(train_idx):
        log.warning("CALIBRATION_SAMPLES=%d but the training split holds %d images: calibrating with all %d",
                    config.calibration_samples, len(train_idx), len(train_idx))
    return {"train": train.subset(train_idx), "val": train.subset(val_idx),
            "calibration": train.subset(train_idx[: config.calibration_samples]), "test": test}


def _write_split(directory: Path, name: str, split: CocoSplit, classes: list[str], size: int,
                 pixels: np.ndarray | None) -> None:
    counts = [len(b) for b in split.boxes]
    stored = {"images": pixels} if pixels is not None else {"files": split.files, "sizes": split.sizes}
    np.savez(directory / f"{name}.npz", **stored, labels=np.arange(len(split.files), dtype=np.int64),
             boxes=np.concatenate(split.boxes).reshape(-1, 4) if split.boxes else np.zeros((0, 4), np.float64),
             box_labels=np.concatenate(split.labels) if split.labels else np.zeros((0,), np.int64),
             box_image=np.repeat(np.arange(len(counts)), counts).astype(np.int64))
    (directory / f"{name}.json").write_text(json.dumps(to_coco(split.boxes_at(size), split.labels, classes, size,
                                                               split.file_names)))


def _decode_all(root: Path, split: CocoSplit) -> np.ndarray:
    """The offline set's images at their generated size (all equal), for the compact "arrays" storage."""
    from visioncompress.data.sources import open_rgb

    return np.stack([np.asarray(open_rgb(root, f), dtype=np.uint8) for f in split.files])


def _read(config: DataConfig, workdir: Path) -> tuple[dict[str, CocoSplit], list[str], dict, Path]:
    """The splits' file lists and boxes, the classes, the source description, and the local root of the files."""
    if config.source == "fashion-mnist-detection":
        from visioncompress.detection.synthetic import write_synthetic_coco

        n_train = config.max_train_samples or SYNTHETIC_TRAIN_IMAGES
        n_test = config.max_test_samples or SYNTHETIC_TEST_IMAGES
        log.info("generating the offline detection set: %d train + %d test images", n_train, n_test)
        root = write_synthetic_coco(workdir / "synthetic", train_images=n_train, test_images=n_test,
                                    image_size=max(config.insize, 160), seed=config.seed,
                                    fashion_mnist_dir=config.path)
        parts, classes, source = _read_coco(root, config.insize)
        return parts, classes, {"name": "fashion-mnist-on-photos", **source}, root
    # COCO folders, archives and s3:// / minio:// URIs: read through the cache, recorded by their own name
    from visioncompress.data.cache import local_root, source_fingerprint
    from visioncompress.errors import ConfigError
    from visioncompress.storage.s3 import is_remote

    remote = is_remote(config.path)
    if not remote and not Path(config.path).exists():
        raise ConfigError("DATASET_PATH", config.path, "an existing folder, .zip or .tar(.gz) archive")
    fingerprint = source_fingerprint(config.path) if (remote or Path(config.path).is_file()) else ""
    root = local_root(config.path, fingerprint or None)
    parts, classes, source = _read_coco(root, config.insize)
    recorded = config.path if remote else str(Path(config.path).resolve())
    return parts, classes, {"name": "coco", "path": config.path, "root": recorded, "fingerprint": fingerprint,
                            **source}, root


def prepare_detection_dataset(config: DataConfig, output_dir: str | os.PathLike) -> DatasetManifest:
    from visioncompress.data.prepare import pixel_statistics

    with tempfile.TemporaryDirectory() as tmp:
        parts, classes, source, root = _read(config, Path(tmp))
        splits = _split(parts, config)
        storage = "arrays" if config.source == "fashion-mnist-detection" else "files"
        manifest = DatasetManifest(
            task="detection", classes=classes, input_size=config.insize, channels=3, stored_channels=3,
            mean=[0.0] * 3, std=[1.0] * 3, splits={name: len(split.files) for name, split in splits.items()},
            source={**source, "seed": config.seed, "val_fraction": config.val_fraction,
                    "boxes": {name: int(sum(len(b) for b in split.boxes)) for name, split in splits.items()}},
            storage=storage,
        )
        with staged_output(output_dir) as scratch:
            for name, split in splits.items():
                pixels = _decode_all(root, split) if storage == "arrays" else None
                _write_split(Path(scratch), name, split, classes, config.insize, pixels)
            data = DetectionData(Path(scratch), manifest)
            mean, std, how = pixel_statistics(lambda i: data.item("train", i)[0], manifest.splits["train"],
                                              config.seed)
            manifest.mean = [round(m, 6) for m in mean]
            manifest.std = [round(max(s, 1e-6), 6) for s in std]
            manifest.source["normalisation"] = how
            write_dataset_manifest(scratch, manifest)
    log.info("detection dataset written to %s (%s storage): %s images, %s boxes", output_dir, storage,
             manifest.splits, manifest.source["boxes"])
    return manifest


@dataclass
class DetectionData:
    """A detection dataset artifact read back: float images in [0, 1] with torchvision-style targets."""

    directory: Path
    manifest: DatasetManifest
    _splits: dict = field(default_factory=dict, repr=False)
    _root: Path | None = field(default=None, repr=False)

    def _split(self, name: str) -> dict[str, np.ndarray]:
        if name not in self._splits:
            path = self.directory / f"{name}.npz"
            if not path.is_file():
                raise ArtifactError(f"dataset artifact {self.directory} has no split {name!r}")
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
            arrays["starts"] = np.searchsorted(arrays["box_image"], np.arange(self._count(arrays) + 1))
            self._splits[name] = arrays
        return self._splits[name]

    @staticmethod
    def _count(arrays: dict) -> int:
        return len(arrays["images"] if "images" in arrays else arrays["files"])

    def size(self, name: str) -> int:
        return self._count(self._split(name))

    def source_root(self) -> Path:
        if self._root is None:
            from visioncompress.data.cache import local_root

            self._root = local_root(self.manifest.source["root"], self.manifest.source.get("fingerprint"))
        return self._root

    def item(self, name: str, index: int, *, train: bool = False, seed: int = 0, epoch: int = 0):
        """Image ``index`` of split ``name`` as (uint8 3 x S x S tensor, {"boxes", "labels", "image_id"})."""
        import torch
        from PIL import Image

        from visioncompress.data.transforms import detection_image, rng_for

        data = self._split(name)
        if "images" in data:
            image = Image.fromarray(data["images"][index])
        else:
            from visioncompress.data.sources import open_rgb

            image = open_rgb(self.source_root(), str(data["files"][index]))
        first, last = data["starts"][index], data["starts"][index + 1]
        pixels, boxes = detection_image(image, data["boxes"][first:last], self.manifest.input_size, train=train,
                                        rng=rng_for(seed, epoch, index) if train else None)
        return pixels, {"boxes": boxes, "labels": torch.from_numpy(data["box_labels"][first:last].copy()),
                        "image_id": int(index) + 1}

    @staticmethod
    def collate(items: list) -> tuple:
        import torch

        return torch.stack([pixels for pixels, _ in items]).float().div_(255.0), [target for _, target in items]

    def loader(self, split: str, batch_size: int, *, train: bool = False, seed: int = 0, epoch: int = 0,
               drop_last: bool = False, workers: int = 0, pin_memory: bool = False, rank: int = 0,
               world_size: int = 1, limit: int = 0):
        """Batches (images float N x 3 x S x S in [0, 1], [{"boxes" xyxy, "labels", "image_id"}]) of this rank's
        shard; ``train``: shuffled by seed + epoch, half of the images flipped with their boxes."""
        from visioncompress.data.loaders import make_loader

        return make_loader(_DetectionFetch(self, split, train, seed, epoch), self.collate, self.size(split),
                           batch_size, shuffle=train, seed=seed, epoch=epoch, drop_last=drop_last, workers=workers,
                           pin_memory=pin_memory, rank=rank, world_size=world_size, limit=limit)

    def split(self, name: str) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        """A whole split at ``insize``: uint8 N x S x S x 3 images and numpy targets (small splits only)."""
        items = [self.item(name, i) for i in range(self.size(name))]
        images = np.stack([pixels.permute(1, 2, 0).numpy() for pixels, _ in items])
        return images, [{"boxes": t["boxes"].numpy(), "labels": t["labels"].numpy()} for _, t in items]

    def coco(self, name: str) -> dict:
        return json.loads((self.directory / f"{name}.json").read_text())

    def batches(self, name: str, batch_size: int, *, shuffle: bool = False, seed: int = 0, limit: int = 0,
                drop_last: bool = False) -> Iterator[tuple[torch.Tensor, list[dict]]]:
        """Evaluation batches in file order (``shuffle`` reorders them by ``seed``, without augmentation)."""
        from visioncompress.data.loaders import make_loader

        yield from make_loader(_DetectionFetch(self, name, False, seed, 0), self.collate, self.size(name),
                               batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, limit=limit)


@dataclass
class _DetectionFetch:
    data: DetectionData
    split: str
    train: bool
    seed: int
    epoch: int

    def __post_init__(self) -> None:
        if self.data.manifest.storage == "files":
            self.data.source_root()  # resolved (fetched, checked) once here, not in every worker

    def __call__(self, index: int):
        return self.data.item(self.split, index, train=self.train, seed=self.seed, epoch=self.epoch)


def load_detection_dataset(directory: str | os.PathLike) -> DetectionData:
    manifest = read_dataset_manifest(directory)
    if manifest.task != "detection":
        raise ArtifactError(f"{directory} is a {manifest.task} dataset; this stage needs a detection dataset")
    return DetectionData(Path(directory), manifest)
