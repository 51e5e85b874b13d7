"""Where images come from: Fashion-MNIST files, an image folder or archive, torchvision datasets.

Each reader returns ``RawSplits``: uint8 images (N x H x W x C), int64 labels, class names,
for a train part and a test part (the test part may be empty; prepare then holds some back).
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visioncompress.errors import ArtifactError, ConfigError, MissingDependencyError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class RawSplits:
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]
    description: dict


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ArtifactError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def read_fashion_mnist(root: str | os.PathLike = "") -> RawSplits:
    root = Path(root) if root else FASHION_MNIST_DIR
    files = {
        part: (root / f"{part}-images-idx3-ubyte.gz", root / f"{part}-labels-idx1-ubyte.gz")
        for part in ("train", "t10k")
    }
    missing = [str(p) for pair in files.values() for p in pair if not p.is_file()]
    if missing:
        raise ArtifactError(
            f"Fashion-MNIST files not found: {missing}. Install Debian's package "
            "(apt-get install dataset-fashion-mnist) or set DATASET_PATH to a folder holding them."
        )
    arrays = {part: (_read_idx(i)[..., None], _read_idx(l).astype(np.int64)) for part, (i, l) in files.items()}
    return RawSplits(
        arrays["train"][0], arrays["train"][1], arrays["t10k"][0], arrays["t10k"][1],
        list(FASHION_MNIST_CLASSES), {"name": "fashion-mnist", "path": str(root), "licence": "MIT"},
    )


def _unpack_if_archive(path: Path, workdir: Path) -> Path:
    if path.is_dir():
        return path
    if not path.is_file():
        raise ConfigError("DATASET_PATH", str(path), "an existing folder, .zip or .tar(.gz) archive")
    target = workdir / "unpacked"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            archive.extractall(target)
    elif tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            archive.extractall(target, filter="data")
    else:
        raise ConfigError("DATASET_PATH", str(path), "a folder, .zip or .tar(.gz) archive")
    entries = [p for p in target.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else target


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _load_class_folder(folder: Path, classes: list[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    images, labels = [], []
    for index, name in enumerate(classes):
        class_dir = folder / name
        if not class_dir.is_dir():
            continue
        for file in sorted(class_dir.rglob("*")):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            with Image.open(file) as img:
                img = img.convert("RGB").resize((size, size), Image.BILINEAR)
                images.append(np.asarray(img, dtype=np.uint8))
            labels.append(index)
    if not images:
        raise ArtifactError(f"no images ({sorted(IMAGE_SUFFIXES)}) found under {folder}")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def read_image_folder(path: str | os.PathLike, size: int) -> RawSplits:
    """A class-per-subfolder tree; if it has ``train/`` and ``test/`` subfolders those are used."""
    with tempfile.TemporaryDirectory() as tmp:
        root = _unpack_if_archive(Path(path), Path(tmp))
        train_dir, test_dir = root / "train", root / "test"
        if train_dir.is_dir() and test_dir.is_dir():
            classes = [p.name for p in _class_dirs(train_dir)]
            train = _load_class_folder(train_dir, classes, size)
            test = _load_class_folder(test_dir, classes, size)
        else:
            classes = [p.name for p in _class_dirs(root)]
            if len(classes) < 2:
                raise ArtifactError(f"{path} must hold one subfolder per class (found {len(classes)})")
            train = _load_class_folder(root, classes, size)
            test = (np.zeros((0, size, size, 3), np.uint8), np.zeros((0,), np.int64))
    return RawSplits(*train, *test, classes, {"name": "image-folder", "path": str(path)})


def read_torchvision(name: str, root: str, size: int) -> RawSplits:
    """A torchvision dataset by class name (downloads: needs a cluster with internet)."""
    import torchvision

    cls = getattr(torchvision.datasets, name, None)
    if not isinstance(cls, type):
        raise ConfigError("DATASET_NAME", name, "a torchvision.datasets class name such as CIFAR10 or MNIST")
    root = root or os.path.join(tempfile.gettempdir(), "visioncompress-torchvision")
    try:
        parts = [cls(root, train=train, download=True) for train in (True, False)]
    except Exception as exc:  # network or format failures surface as one clear line
        raise MissingDependencyError(f"could not load torchvision dataset {name} into {root}: {exc}") from exc

    def to_arrays(ds) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for img, label in ds:
            images.append(np.asarray(img.convert("RGB").resize((size, size)), dtype=np.uint8))
            labels.append(int(label))
        return np.stack(images), np.asarray(labels, dtype=np.int64)

    classes = [str(c) for c in getattr(parts[0], "classes", [])]
    train, test = to_arrays(parts[0]), to_arrays(parts[1])
    if not classes:
        classes = [str(i) for i in range(int(train[1].max()) + 1)]
    shutil.rmtree(os.path.join(root, "__unused__"), ignore_errors=True)
    return RawSplits(*train, *test, classes, {"name": f"torchvision.{name}", "path": root})
