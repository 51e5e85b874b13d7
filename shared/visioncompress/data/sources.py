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
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visioncompress.errors import ArtifactError, ConfigError, MissingDependencyError
from visioncompress.storage.s3 import is_remote

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
    storage: str = "arrays"  # "arrays": *_images are uint8 N x H x W x C; "files": paths relative to the root
    min_side: int = 0  # the smallest image side (files: from the headers)

    def __post_init__(self) -> None:
        if self.storage == "arrays" and not self.min_side and len(self.train_images):
            self.min_side = int(min(self.train_images.shape[1:3]))


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
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                archive.extractall(target)
        elif tarfile.is_tarfile(path):
            with tarfile.open(path) as archive:
                archive.extractall(target, filter="data")
        else:
            raise ConfigError("DATASET_PATH", str(path), "a folder, .zip or .tar(.gz) archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ArtifactError(f"DATASET_PATH={str(path)!r}: the archive could not be unpacked "
                            f"({type(exc).__name__}: {exc})") from exc
    entries = [p for p in target.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else target


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def unreadable_error(parameter: str, where: str, bad: list[tuple[str, str]]) -> ArtifactError:
    shown = "; ".join(f"{name} ({why})" for name, why in bad[:5])
    more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
    return ArtifactError(f"{parameter}={where!r}: {len(bad)} image file(s) could not be read: {shown}{more}. "
                         "Remove or replace them")


def warn_small(log, where: str, sizes: list[tuple[int, int]], size: int) -> None:
    small = sum(1 for w, h in sizes if min(w, h) < size)
    if small:
        log.warning("%s: %d of %d images are smaller than insize=%d and were upscaled (blurrier than the "
                    "originals); consider a smaller insize", where, small, len(sizes), size)


def open_rgb(root: Path, relative: str):
    """An image file of a dataset, decoded as RGB (PIL); a file that went missing or unreadable is an ArtifactError."""
    from PIL import Image, UnidentifiedImageError

    path = Path(root) / relative
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ArtifactError(f"dataset image {relative!r} under {root} could not be read "
                            f"({type(exc).__name__}: {exc})") from exc


def image_size(file: Path) -> tuple[tuple[int, int], str]:
    """An image file's (width, height) from its header (nothing is decoded), or why it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        if file.stat().st_size == 0:
            return (0, 0), "0 bytes"
        with Image.open(file) as img:
            return img.size, ""
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return (0, 0), f"not a readable image: {type(exc).__name__}"


def _scan_class_folder(folder: Path, root: Path, classes: list[str], size: int,
                       where: str = "") -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Every image under ``folder/<class>/``: paths relative to ``root``, labels, sizes (headers only)."""
    from visioncompress.log import get_logger

    files, labels, sizes, bad = [], [], [], []
    for index, name in enumerate(classes):
        class_dir = folder / name
        if not class_dir.is_dir():
            continue
        for file in sorted(class_dir.rglob("*")):
            if file.suffix.lower() not in IMAGE_SUFFIXES or not file.is_file():
                continue
            original, why = image_size(file)
            if why:
                bad.append((str(file.relative_to(folder)), why))
                continue
            files.append(file.relative_to(root).as_posix())
            sizes.append(original)
            labels.append(index)
    if bad:
        raise unreadable_error("DATASET_PATH", where or str(folder), bad)
    if not files:
        raise ArtifactError(f"DATASET_PATH={where or str(folder)!r}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                            f"found under {folder.name or folder}")
    warn_small(get_logger("data"), f"DATASET_PATH={where or str(folder)!r}", sizes, size)
    return np.asarray(files, dtype=str), np.asarray(labels, dtype=np.int64), sizes


def read_image_folder(path: str | os.PathLike, size: int) -> RawSplits:
    """A class-per-subfolder tree (folder, archive or s3:// / minio:// URI); if it has ``train/`` and ``test/``
    subfolders those are used. Only file lists and labels are read (image headers are checked); the images
    are decoded on the fly when batches are read."""
    from visioncompress.data.cache import local_root, source_fingerprint
    from visioncompress.log import get_logger

    path = str(path)
    remote = is_remote(path)
    recorded = path if remote else str(Path(path).resolve())
    fingerprint = source_fingerprint(path) if (remote or Path(path).is_file()) else ""
    if not remote and not Path(path).exists():
        raise ConfigError("DATASET_PATH", path, "an existing folder, .zip or .tar(.gz) archive")
    root = local_root(path, fingerprint or None)
    train_dir, test_dir = root / "train", root / "test"
    if train_dir.is_dir() and test_dir.is_dir():
        classes = [p.name for p in _class_dirs(train_dir)]
        extra = sorted({p.name for p in _class_dirs(test_dir)} - set(classes))
        if extra:
            get_logger("data").warning("DATASET_PATH=%r: test classes %s have no train folder; their images "
                                       "are ignored", path, extra)
        train_root = train_dir
    else:
        classes = [p.name for p in _class_dirs(root)]
        train_root = root
    if len(classes) < 2:
        raise ArtifactError(f"DATASET_PATH={path!r} must hold one subfolder per class, at least two "
                            f"classes (found {len(classes)}: {classes})")
    train_files, train_labels, sizes = _scan_class_folder(train_root, root, classes, size, path)
    empty = [name for index, name in enumerate(classes) if not (train_labels == index).any()]
    if empty:
        raise ArtifactError(f"DATASET_PATH={path!r}: class folder(s) {empty} hold no images; every class "
                            "needs training images")
    if train_root is train_dir:
        test_files, test_labels, _ = _scan_class_folder(test_dir, root, classes, size, path)
    else:
        test_files, test_labels = np.zeros((0,), dtype=str), np.zeros((0,), np.int64)
    return RawSplits(train_files, train_labels, test_files, test_labels, classes,
                     {"name": "image-folder", "path": path, "root": recorded, "fingerprint": fingerprint},
                     storage="files", min_side=min(min(s) for s in sizes))


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
        # kept at the set's own resolution (resized on the fly) when all images share one size
        images, labels = [], []
        for img, label in ds:
            images.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
            labels.append(int(label))
        if len({image.shape for image in images}) > 1:
            from PIL import Image

            images = [np.asarray(Image.fromarray(image).resize((size, size)), dtype=np.uint8) for image in images]
        return np.stack(images), np.asarray(labels, dtype=np.int64)

    classes = [str(c) for c in getattr(parts[0], "classes", [])]
    train, test = to_arrays(parts[0]), to_arrays(parts[1])
    if not classes:
        classes = [str(i) for i in range(int(train[1].max()) + 1)]
    shutil.rmtree(os.path.join(root, "__unused__"), ignore_errors=True)
    return RawSplits(*train, *test, classes, {"name": f"torchvision.{name}", "path": root})
