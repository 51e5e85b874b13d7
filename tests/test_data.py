"""Data preparation on real Fashion-MNIST files and on an image folder / archive."""

import json
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from visioncompress.config import DataConfig
from visioncompress.data import load_dataset, prepare_dataset
from visioncompress.data.sources import read_fashion_mnist
from visioncompress.errors import ArtifactError


def test_fashion_mnist_splits(dataset_dir):
    dataset = load_dataset(dataset_dir)
    manifest = dataset.manifest
    assert manifest.splits == {"train": 3600, "val": 400, "calibration": 256, "test": 1000}
    assert manifest.num_classes == 10 and manifest.input_size == 32 and manifest.channels == 3
    x, y = next(dataset.batches("train", 8))
    assert x.shape == (8, 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    # normalised with the recorded statistics: roughly zero mean, unit std over the training split
    all_x = dataset.normalise(dataset.arrays("train")[0][:2000])
    assert abs(float(all_x.mean())) < 0.05 and abs(float(all_x.std()) - 1) < 0.05


def test_calibration_comes_from_training_data_only(dataset_dir):
    dataset = load_dataset(dataset_dir)
    as_rows = lambda a: {row.tobytes() for row in a.reshape(len(a), -1)}  # noqa: E731
    train, calibration, test = (as_rows(dataset.arrays(s)[0]) for s in ("train", "calibration", "test"))
    assert calibration <= train
    assert not calibration & test


def _write_folder(root, per_class=12):
    raw = read_fashion_mnist()
    for label, name in enumerate(["shirt", "bag", "boot"]):
        (root / name).mkdir(parents=True)
        images = raw.train_images[raw.train_labels == [0, 8, 9][label]][:per_class, :, :, 0]
        for i, image in enumerate(images):
            Image.fromarray(image).save(root / name / f"{i}.png")


def test_image_folder_and_archive(tmp_path):
    _write_folder(tmp_path / "folder")
    out = tmp_path / "from-folder"
    manifest = prepare_dataset(DataConfig(source="folder", path=str(tmp_path / "folder"), insize=16,
                                          val_fraction=0.1, calibration_samples=8), out)
    assert manifest.classes == ["bag", "boot", "shirt"]
    assert sum(manifest.splits[s] for s in ("train", "val", "test")) == 36
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in (tmp_path / "folder").rglob("*.png"):
            zf.write(file, file.relative_to(tmp_path))
    manifest2 = prepare_dataset(DataConfig(source="folder", path=str(archive), insize=16, calibration_samples=8),
                                tmp_path / "from-zip")
    assert manifest2.classes == manifest.classes and manifest2.splits == manifest.splits
    assert json.loads((out / "manifest.json").read_text())["input_size"] == 16


def test_failed_preparation_leaves_no_output(tmp_path):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir(parents=True)
    out = tmp_path / "out"
    with pytest.raises(ArtifactError, match="no images"):
        prepare_dataset(DataConfig(source="folder", path=str(tmp_path / "empty")), out)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_incomplete_dataset_artifact_is_refused(dataset_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(dataset_dir, broken)
    (broken / "test.npz").unlink()
    with pytest.raises(ArtifactError, match="missing split"):
        load_dataset(broken)
