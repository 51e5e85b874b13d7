"""A tiny COCO set (Fashion-MNIST items pasted on noise, exact boxes) and Runner-style checkpoints."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

# The mm stack lives in its own environment (make test-mm); elsewhere these tests are not even collected.
collect_ignore_glob = [] if importlib.util.find_spec("mmdet") else ["test_*.py"]

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
CLASSES = {0: "tshirt", 1: "trouser", 8: "bag"}   # Fashion-MNIST label -> category name
SIZE = 128


def _fashion(n: int = 2000):
    with gzip.open(FASHION) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    with gzip.open(FASHION.with_name("train-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
    return images, labels


def make_coco(root: Path, counts=(("train", 16), ("val", 8), ("test", 8)), seed: int = 0) -> Path:
    from PIL import Image
    rng = np.random.default_rng(seed)
    items, labels = _fashion()
    pools = {lab: np.flatnonzero(labels == lab) for lab in CLASSES}
    cat_ids = {lab: i + 1 for i, lab in enumerate(CLASSES)}
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    ann_id = 1
    for split, n in counts:
        images, anns = [], []
        for k in range(n):
            canvas = rng.integers(0, 40, (SIZE, SIZE, 3)).astype(np.uint8)
            boxes = []
            for _ in range(rng.integers(1, 4)):
                lab = list(CLASSES)[rng.integers(len(CLASSES))]
                side = int(rng.integers(36, 60))
                patch = np.asarray(Image.fromarray(items[rng.choice(pools[lab])]).resize((side, side)))
                ys, xs = np.nonzero(patch > 40)
                patch = patch[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
                h, w = patch.shape
                for _try in range(20):
                    x0, y0 = int(rng.integers(0, SIZE - w)), int(rng.integers(0, SIZE - h))
                    if all(x0 >= b[2] or x0 + w <= b[0] or y0 >= b[3] or y0 + h <= b[1] for b in boxes):
                        break
                else:
                    continue
                region = canvas[y0:y0 + h, x0:x0 + w]
                color = np.array([255, 200, 120]) if lab == 8 else np.array([255, 255, 255])
                region[:] = np.maximum(region, (patch[..., None] / 255.0 * color).astype(np.uint8))
                boxes.append((x0, y0, x0 + w, y0 + h))
                anns.append(dict(id=ann_id, image_id=k + 1, category_id=cat_ids[lab], bbox=[x0, y0, w, h],
                                 area=w * h, iscrowd=0))
                ann_id += 1
            name = f"{split}_{k:03d}.png"
            Image.fromarray(canvas).save(root / "images" / name)
            images.append(dict(id=k + 1, file_name=name, width=SIZE, height=SIZE))
        cats = [dict(id=cat_ids[lab], name=CLASSES[lab]) for lab in CLASSES]
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps(dict(images=images, annotations=anns, categories=cats)))
    return root


def runner_checkpoint(model, path: Path) -> Path:
    """Save like an mmengine Runner does: meta, state_dict and a message hub full of HistoryBuffers."""
    from mmengine.logging import MessageHub
    from mmengine.runner import save_checkpoint
    hub = MessageHub(f"ckpt_{path.stem}")
    hub.update_scalar("train/loss", 1.5)
    hub.update_info("iter", 3)
    save_checkpoint(dict(meta=dict(epoch=1, iter=3, mmdet_version="3.3.0"), state_dict=model.state_dict(),
                         message_hub=hub.state_dict()), str(path))
    return path


def checkpoint_for(config: str, path: Path, num_classes: int = len(CLASSES)) -> Path:
    """A randomly initialised (seeded) model of config, saved as a Runner checkpoint."""
    import torch
    from visioncompress.detection.mm.configs import load_model_config
    from visioncompress.detection.mm.runner import build_model
    torch.manual_seed(0)
    return runner_checkpoint(build_model(load_model_config(config, "config", num_classes).model), path)


@pytest.fixture(scope="session")
def coco_root(tmp_path_factory) -> Path:
    return make_coco(tmp_path_factory.mktemp("mm") / "coco")


@pytest.fixture(scope="session")
def make_checkpoint():
    return checkpoint_for
