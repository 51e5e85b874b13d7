"""Streaming data: folder datasets hold file lists, images are decoded/resized/augmented when read, the
loader contract (order, sharding, workers), detection flips that move boxes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visioncompress.config import DataConfig, ModelConfig, TrainConfig
from visioncompress.data import load_dataset, prepare_dataset
from visioncompress.data.loaders import shard_order
from visioncompress.data.sources import read_fashion_mnist

REPO = Path(__file__).resolve().parents[1]


def write_folder(root: Path, per_class: int, classes=(0, 8, 9)) -> Path:
    """Fashion-MNIST items as PNG files, one subfolder per class."""
    raw = read_fashion_mnist()
    for label in classes:
        (root / f"c{label}").mkdir(parents=True, exist_ok=True)
        images = raw.train_images[raw.train_labels == label][:per_class, :, :, 0]
        for i, image in enumerate(images):
            Image.fromarray(image).save(root / f"c{label}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("streaming")
    write_folder(root / "images", 40)
    prepare_dataset(DataConfig(source="folder", path=str(root / "images"), insize=24, val_fraction=0.1,
                               calibration_samples=16, seed=0), root / "dataset")
    return root / "dataset"


def test_folder_dataset_holds_file_lists_not_pixels(folder_dataset):
    dataset = load_dataset(folder_dataset)
    assert dataset.manifest.storage == "files" and dataset.manifest.input_size == 24
    with np.load(folder_dataset / "train.npz") as data:
        assert set(data.files) == {"files", "labels"}
        assert all(name.endswith(".png") for name in data["files"])
    size = sum(p.stat().st_size for p in folder_dataset.iterdir())
    assert size < 20_000  # 120 images of 24x24x3 would be 207 kB as pixels
    x, y = next(iter(dataset.loader("train", 8, train=True)))
    assert x.shape == (8, 3, 24, 24) and str(x.dtype) == "torch.float32" and str(y.dtype) == "torch.int64"
    assert dataset.manifest.source["normalisation"]["images"] == dataset.manifest.splits["train"]
    # evaluation batches for the numpy runtimes: the same images, file order, no augmentation
    xs, ys = next(dataset.batches("test", 5))
    assert xs.shape == (5, 3, 24, 24) and np.array_equal(ys, dataset.arrays("test")[1][:5])


def test_loader_order_augmentation_and_shards(folder_dataset):
    dataset = load_dataset(folder_dataset)
    n = dataset.size("train")

    def run(**kwargs):
        batches = list(dataset.loader("train", 7, **kwargs))
        return np.concatenate([x.numpy() for x, _ in batches]), np.concatenate([y.numpy() for _, y in batches])

    x0, y0 = run(train=True, seed=5, epoch=0)
    x0b, y0b = run(train=True, seed=5, epoch=0, workers=2)  # worker processes give the same batches
    np.testing.assert_array_equal(x0, x0b)
    np.testing.assert_array_equal(y0, y0b)
    _, y1 = run(train=True, seed=5, epoch=1)
    assert not np.array_equal(y0, y1) and sorted(y0) == sorted(y1)  # a new order each epoch, same images
    xe, _ = run(train=False)
    order = shard_order(n, shuffle=True, seed=5, epoch=0)
    flipped = [not np.array_equal(x0[k], xe[i]) for k, i in enumerate(order)]
    for k, i in enumerate(order):  # at 24 px training flips (no crop): each image as stored or mirrored
        assert np.array_equal(x0[k], xe[i] if not flipped[k] else xe[i][..., ::-1])
    assert 0.3 < np.mean(flipped) < 0.7
    assert len(dataset.loader("train", 7)) == -(-n // 7)
    assert len(dataset.loader("train", 7, drop_last=True)) == n // 7

    # two ranks: equal-length, disjoint shards whose union is the (even part of the) shuffled order
    shards = [shard_order(n, shuffle=True, seed=5, epoch=0, rank=r, world_size=2) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == n // 2 and not set(shards[0]) & set(shards[1])
    assert set(shards[0]) | set(shards[1]) == set(np.random.default_rng(5).permutation(n)[: n - n % 2])
    labels = dataset.arrays("train")[1]
    for rank in (0, 1):
        _, y = run(train=True, seed=5, rank=rank, world_size=2)
        np.testing.assert_array_equal(y, labels[shards[rank]])
        assert len(dataset.loader("train", 7, train=True, rank=rank, world_size=2)) == -(-(n // 2) // 7)


def test_random_resized_crop_from_64_pixels():
    import torch

    from visioncompress.data.transforms import classification_image, crop_scale, rng_for

    assert crop_scale(32) is None and crop_scale(96) == (0.6, 1.0) and crop_scale(224) == (0.08, 1.0)
    image = Image.fromarray(np.tile(np.arange(200, dtype=np.uint8), (150, 1))).convert("RGB")  # a left-right ramp
    plain = classification_image(image, 128, train=False, rng=None)
    crops = [classification_image(image, 128, train=True, rng=rng_for(0, 0, i)) for i in range(8)]
    assert plain.shape == crops[0].shape == (3, 128, 128) and plain.dtype == torch.uint8
    ranges = {int(c[0, 64, -1]) - int(c[0, 64, 0]) for c in crops}
    assert len(ranges) > 4 and all(abs(r) < 200 for r in ranges)  # crops of different widths, some mirrored
    assert any(r < 0 for r in ranges) and any(r > 0 for r in ranges)


def test_fashion_mnist_is_kept_at_28_pixels(dataset_dir):
    with np.load(dataset_dir / "train.npz") as data:
        assert data["images"].shape[1:] == (28, 28, 1)  # resized to insize (32) when read, never stored
    x, _ = next(iter(load_dataset(dataset_dir).loader("train", 4, train=True)))
    assert tuple(x.shape) == (4, 3, 32, 32)


PEAK_SCRIPT = """
import json, resource, sys
from visioncompress.config import DataConfig
from visioncompress.data import prepare_dataset
prepare_dataset(DataConfig(source="folder", path=sys.argv[1], insize=160, calibration_samples=16), sys.argv[2])
print(json.dumps({"peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def test_preparation_memory_does_not_grow_with_the_number_of_images(tmp_path):
    peaks = {}
    for per_class in (20, 200):  # 60 vs 600 images; at 160 px their pixels alone would be 4.6 vs 46 MB (x5 as floats)
        images = write_folder(tmp_path / f"images-{per_class}", per_class)
        run = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(images), str(tmp_path / f"out-{per_class}")],
                             capture_output=True, text=True, cwd=REPO, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        peaks[per_class] = json.loads(run.stdout.strip().splitlines()[-1])["peak_kb"] / 1024
    assert peaks[200] - peaks[20] < 40, peaks  # MB; decoding everything at once would add > 200 MB


def test_detection_flip_moves_the_boxes():
    from visioncompress.data.transforms import detection_image, rng_for

    canvas = np.zeros((100, 200, 3), np.uint8)
    canvas[20:60, 10:50] = 255  # one white object at x 10..50, y 20..60 in a 200 x 100 image
    boxes = np.array([[10.0, 20.0, 50.0, 60.0]])
    flipped = kept = None
    for index in range(20):
        pixels, moved = detection_image(Image.fromarray(canvas), boxes, 64, train=True, rng=rng_for(0, 0, index))
        if moved[0, 0] > 32:
            flipped = (pixels, moved)
        else:
            kept = (pixels, moved)
    assert flipped is not None and kept is not None  # both happen within 20 images
    np.testing.assert_allclose(kept[1].numpy(), [[3.2, 12.8, 16.0, 38.4]], rtol=1e-5)  # resized only
    np.testing.assert_allclose(flipped[1].numpy(), [[48.0, 12.8, 60.8, 38.4]], rtol=1e-5)  # x -> 64 - x
    for pixels, box in (kept, flipped):
        x0, y0, x1, y1 = box[0].round().int().tolist()
        inside = pixels[:, y0 + 1:y1 - 1, x0 + 1:x1 - 1].float().mean()
        assert inside > 250 and pixels.float().mean() < 255 * 0.1  # the white object sits inside its box


def test_detection_loader_batches(detection_dataset_dir):
    from visioncompress.detection.data import load_detection_dataset

    data = load_detection_dataset(detection_dataset_dir)
    assert data.manifest.storage == "arrays"
    loader = data.loader("train", 4, train=True, seed=1, rank=1, world_size=2)
    images, targets = next(iter(loader))
    assert tuple(images.shape) == (4, 3, 96, 96) and 0 <= float(images.min()) and float(images.max()) <= 1
    assert len(loader) == -(-(data.size("train") // 2) // 4)
    for target in targets:
        boxes = target["boxes"]
        assert boxes.dtype.is_floating_point and target["labels"].dtype.is_floating_point is False
        assert (boxes >= 0).all() and (boxes <= 96).all() and (boxes[:, 2:] > boxes[:, :2]).all()
    eval_images, eval_targets = next(iter(data.loader("test", 3)))
    stored, stored_targets = data.split("test")
    np.testing.assert_array_equal((eval_images * 255).round().byte().permute(0, 2, 3, 1).numpy(), stored[:3])
    assert [t["image_id"] for t in eval_targets] == [1, 2, 3]
    np.testing.assert_array_equal(eval_targets[0]["boxes"].numpy(), stored_targets[0]["boxes"])


def test_finetune_on_a_folder_dataset(folder_dataset, tmp_path):
    from visioncompress.artifacts import read_model_metadata
    from visioncompress.train import finetune

    finetune(folder_dataset, tmp_path / "model", ModelConfig(model="mobilenet_v3_small"),
             TrainConfig(batch_size=16, finetune_epochs=1, learning_rate=0.002))
    metadata = read_model_metadata(tmp_path / "model")
    assert metadata.input_size == 24 and metadata.metrics["val_top1"] is not None
