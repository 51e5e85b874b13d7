"""COCO-format detection data: find the annotation files, check them, read images and boxes.

A COCO folder (or .zip/.tar archive) holds ``annotations/instances_<split>*.json`` and the images
they name, under ``images/``, ``<split>/``, ``<split>2017/`` or the root. ``train`` is required;
``test`` (or else ``val``) becomes the test split, otherwise part of train is held back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visioncompress.data.sources import image_size, unreadable_error, warn_small
from visioncompress.errors import ArtifactError
from visioncompress.log import get_logger


@dataclass
class CocoSplit:
    files: np.ndarray         # str N: image paths relative to the root
    sizes: np.ndarray         # int64 N x 2: each image's (width, height), read from its header
    boxes: list[np.ndarray]   # per image, float64 K x 4 (x0, y0, x1, y1) in the image's own pixels
    labels: list[np.ndarray]  # per image, int64 K, contiguous class ids 1..C
    file_names: list[str]

    def subset(self, index) -> "CocoSplit":
        return CocoSplit(self.files[index], self.sizes[index], [self.boxes[i] for i in index],
                         [self.labels[i] for i in index], [self.file_names[i] for i in index])

    def boxes_at(self, size: int) -> list[np.ndarray]:
        """The boxes scaled to ``size`` x ``size`` images (float32), as the loaders scale them."""
        return [(b * ([size / w, size / h] * 2)).astype(np.float32).reshape(-1, 4)
                for b, (w, h) in zip(self.boxes, self.sizes.tolist())]


def find_annotation_files(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    candidates = sorted(root.rglob("*.json"))
    for split in ("train", "val", "test"):
        for path in candidates:
            stem = path.stem.lower()
            if stem.startswith(f"instances_{split}") or stem == split:
                found.setdefault(split, path)
    if "train" not in found:
        names = [str(p.relative_to(root)) for p in candidates][:10]
        raise ArtifactError(f"{root}: no COCO training annotations (annotations/instances_train*.json); "
                            f"JSON files found: {names or 'none'}")
    return found


def load_annotations(path: Path) -> dict:
    try:
        coco = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    for key in ("images", "categories"):
        if not coco.get(key):
            raise ArtifactError(f"{path}: the COCO file has no {key!r}")
    if not coco.get("annotations"):
        raise ArtifactError(f"{path}: the COCO file has no annotations (a detection set needs boxes; "
                            f"{len(coco['images'])} images and 0 annotations found)")
    category_ids = {c["id"] for c in coco["categories"]}
    image_ids = {i["id"] for i in coco["images"]}
    for ann in coco["annotations"]:
        if ann.get("category_id") not in category_ids:
            raise ArtifactError(f"{path}: annotation {ann.get('id')} has category_id {ann.get('category_id')!r}, "
                                f"which is not one of the categories {sorted(category_ids)}")
        if ann.get("image_id") not in image_ids:
            raise ArtifactError(f"{path}: annotation {ann.get('id')} refers to image_id "
                                f"{ann.get('image_id')!r}, which is not in 'images'")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and bbox[2] >= 0 and bbox[3] >= 0):
            raise ArtifactError(f"{path}: annotation {ann.get('id')} has bbox {bbox!r}; expected [x, y, w, h]")
    return coco


def category_names(coco: dict) -> tuple[list[int], list[str]]:
    ordered = sorted(coco["categories"], key=lambda c: c["id"])
    return [c["id"] for c in ordered], [str(c["name"]) for c in ordered]


def _image_path(root: Path, annotation_file: Path, split: str, file_name: str) -> Path:
    for folder in (root / "images", root / split, root / f"{split}2017", annotation_file.parent.parent / "images",
                   annotation_file.parent, root):
        if (folder / file_name).is_file():
            return folder / file_name
    raise ArtifactError(f"image {file_name!r} named in {annotation_file.name} was not found under {root}")


def read_split(root: Path, annotation_file: Path, split: str, size: int, category_ids: list[int]) -> CocoSplit:
    """One split's image files (headers checked, nothing decoded) and boxes; boxes smaller than a pixel once the
    image is resized to ``size`` x ``size`` are dropped."""
    coco = load_annotations(annotation_file)
    contiguous = {cat_id: index + 1 for index, cat_id in enumerate(category_ids)}
    unknown = {c["id"] for c in coco["categories"]} - set(category_ids)
    if unknown:
        raise ArtifactError(f"{annotation_file}: categories {sorted(unknown)} are not in the training categories "
                            f"{category_ids}")
    per_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        if not ann.get("iscrowd", 0):
            per_image.setdefault(ann["image_id"], []).append(ann)
    files, boxes, labels, names, bad, sizes = [], [], [], [], [], []
    for info in sorted(coco["images"], key=lambda i: i["id"]):
        path = _image_path(root, annotation_file, split, info["file_name"])
        (width, height), why = image_size(path)
        if why:
            bad.append((str(info["file_name"]), why))
            continue
        files.append(path.relative_to(root).as_posix())
        sizes.append((width, height))
        sx, sy = size / width, size / height
        kept_boxes, kept_labels = [], []
        for ann in per_image.get(info["id"], []):
            x, y, w, h = ann["bbox"]
            if (x + w) * sx - x * sx >= 1 and (y + h) * sy - y * sy >= 1:
                kept_boxes.append([x, y, x + w, y + h])
                kept_labels.append(contiguous[ann["category_id"]])
        boxes.append(np.asarray(kept_boxes, np.float64).reshape(-1, 4))
        labels.append(np.asarray(kept_labels, np.int64))
        names.append(info["file_name"])
    if bad:
        raise unreadable_error("DATASET_PATH", str(annotation_file.name), bad)
    if not files:
        raise ArtifactError(f"{annotation_file}: no images")
    warn_small(get_logger("data"), f"{annotation_file.name}", sizes, size)
    return CocoSplit(np.asarray(files, dtype=str), np.asarray(sizes, np.int64).reshape(-1, 2), boxes, labels, names)


def to_coco(boxes: list[np.ndarray], labels: list[np.ndarray], classes: list[str], size: int,
            file_names: list[str] | None = None) -> dict:
    """Ground truth in COCO form (image ids 1..N in order, category ids 1..C) for pycocotools."""
    images, annotations = [], []
    for index, (image_boxes, image_labels) in enumerate(zip(boxes, labels)):
        name = file_names[index] if file_names else f"{index + 1:06d}.png"
        images.append({"id": index + 1, "file_name": name, "width": size, "height": size})
        for box, label in zip(image_boxes.tolist(), image_labels.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": int(label),
                                "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(classes)]
    return {"images": images, "annotations": annotations, "categories": categories}
