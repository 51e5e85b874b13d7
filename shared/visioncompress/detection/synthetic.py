"""An offline detection set with exact boxes: Fashion-MNIST items placed on real photographs.

The backgrounds are the photographs that scikit-image ships (astronaut, coffee, rocket, ...);
each image gets 1-3 items at random positions and scales, tinted and alpha-blended by the
item's own intensity. The box is the extent of the item's visible pixels after scaling, so it
is exact. The result is written as an ordinary COCO folder (``images/`` + ``annotations/``),
and from there it goes through the same loader as a user's COCO data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from visioncompress.data.sources import FASHION_MNIST_CLASSES, read_fashion_mnist
from visioncompress.errors import MissingDependencyError
from visioncompress.log import get_logger

log = get_logger("detection.synthetic")

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket",
          "hubble_deep_field", "camera", "coins", "moon", "grass", "gravel", "brick", "immunohistochemistry",
          "retina", "horse", "page")
VISIBLE = 40  # an item pixel brighter than this counts as part of the object


def _photos() -> list[np.ndarray]:
    try:
        import skimage.data
    except ImportError as exc:
        raise MissingDependencyError("scikit-image is needed for the offline detection set "
                                     "(pip install scikit-image)") from exc
    photos = []
    for name in PHOTOS:
        img = np.asarray(getattr(skimage.data, name)())
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        photos.append(np.ascontiguousarray(img[..., :3]).astype(np.uint8))
    return photos


def _background(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    h, w = photo.shape[:2]
    side = int(rng.integers(min(h, w) // 3, min(h, w) + 1))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[top:top + side, left:left + side])
    return np.asarray(crop.resize((size, size), Image.BILINEAR), dtype=np.float32)


def _overlaps(box: tuple[int, int, int, int], boxes: list[tuple[int, int, int, int]]) -> bool:
    x0, y0, x1, y1 = box
    for a0, b0, a1, b1 in boxes:
        inter = max(0, min(x1, a1) - max(x0, a0)) * max(0, min(y1, b1) - max(y0, b0))
        if inter > 0.2 * min((x1 - x0) * (y1 - y0), (a1 - a0) * (b1 - b0)):
            return True
    return False


def _render(background: np.ndarray, items: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
            max_objects: int) -> tuple[np.ndarray, list[dict]]:
    from PIL import Image

    size = background.shape[0]
    canvas, placed, annotations = background.copy(), [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        index = int(rng.integers(0, len(items)))
        side = int(rng.integers(int(size * 0.2), int(size * 0.5) + 1))
        item = np.asarray(Image.fromarray(items[index]).resize((side, side), Image.BILINEAR), dtype=np.float32)
        rows, cols = np.nonzero(item > VISIBLE)
        if len(rows) == 0:
            continue
        for _attempt in range(10):
            top, left = int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))
            box = (left + int(cols.min()), top + int(rows.min()), left + int(cols.max()) + 1, top + int(rows.max()) + 1)
            if not _overlaps(box, placed):
                break
        else:
            continue
        alpha = np.clip(item / 255.0 * 1.4, 0.0, 1.0)[..., None]
        alpha[item <= VISIBLE] = 0.0
        tint = rng.uniform(0.35, 1.0, size=3) * 255.0
        region = canvas[top:top + side, left:left + side]
        canvas[top:top + side, left:left + side] = region * (1 - alpha) + tint * alpha
        placed.append(box)
        x0, y0, x1, y1 = box
        annotations.append({"category_id": int(labels[index]) + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                            "area": float((x1 - x0) * (y1 - y0)), "iscrowd": 0})
    return canvas.round().clip(0, 255).astype(np.uint8), annotations


def write_synthetic_coco(root: str | os.PathLike, *, train_images: int = 2000, test_images: int = 500,
                         image_size: int = 160, max_objects: int = 3, seed: int = 0,
                         fashion_mnist_dir: str = "") -> Path:
    """Write ``root/images/*.png`` and ``root/annotations/instances_{train,test}.json``; return ``root``."""
    from PIL import Image

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    raw = read_fashion_mnist(fashion_mnist_dir)
    photos = _photos()
    rng = np.random.default_rng(seed)
    categories = [{"id": i + 1, "name": name, "supercategory": "fashion"}
                  for i, name in enumerate(FASHION_MNIST_CLASSES)]
    # Train objects come from Fashion-MNIST's train part, test objects from its test part; the
    # photographs are shared but every crop is different.
    parts = {"train": (raw.train_images[..., 0], raw.train_labels, train_images),
             "test": (raw.test_images[..., 0], raw.test_labels, test_images)}
    next_ann = 1
    for split, (items, labels, count) in parts.items():
        images, annotations = [], []
        for n in range(count):
            image_id = len(images) + 1
            photo = photos[int(rng.integers(0, len(photos)))]
            pixels, objects = _render(_background(photo, image_size, rng), items, labels, rng, max_objects)
            file_name = f"{split}_{image_id:06d}.png"
            Image.fromarray(pixels).save(root / "images" / file_name)
            images.append({"id": image_id, "file_name": file_name, "width": image_size, "height": image_size})
            for obj in objects:
                annotations.append({"id": next_ann, "image_id": image_id, **obj})
                next_ann += 1
            if (n + 1) % 500 == 0 and n + 1 < count:
                log.info("%s: %d/%d images", split, n + 1, count)
        coco = {"info": {"description": "Fashion-MNIST items on scikit-image photographs (visioncompress)",
                         "licence": "Fashion-MNIST: MIT; photographs: scikit-image data (public domain / CC0)"},
                "images": images, "annotations": annotations, "categories": categories}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    return root
