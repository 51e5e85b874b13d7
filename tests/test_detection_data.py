"""Detection data: the offline set's boxes are exact, COCO folders/archives load, bad data fails early."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from visioncompress.config import DataConfig
from visioncompress.data import prepare_dataset
from visioncompress.detection.data import load_detection_dataset
from visioncompress.detection.synthetic import _render
from visioncompress.errors import ArtifactError, ConfigError


def test_rendered_boxes_are_the_exact_extent_of_the_object():
    rng = np.random.default_rng(3)
    background = np.zeros((96, 96, 3), np.float32)
    item = np.zeros((28, 28), np.uint8)
    item[6:20, 9:15] = 255  # a bright 14 x 6 bar
    pixels, objects = _render(background, item[None], np.array([4]), rng, max_objects=1)
    assert len(objects) == 1 and objects[0]["category_id"] == 5
    rows, cols = np.nonzero(pixels.max(axis=-1) > 0)
    x, y, w, h = objects[0]["bbox"]
    assert (x, y, x + w, y + h) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)


def _coco_folder(root, *, annotations=True, category_id=1):
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    Image.fromarray(np.full((100, 200, 3), 90, np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.full((100, 200, 3), 30, np.uint8)).save(root / "images" / "b.png")
    coco = {"images": [{"id": 7, "file_name": "a.png", "width": 200, "height": 100},
                       {"id": 9, "file_name": "b.png", "width": 200, "height": 100}],
            "categories": [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": category_id, "bbox": [20, 10, 100, 50],
                             "area": 5000, "iscrowd": 0},
                            {"id": 2, "image_id": 9, "category_id": 3, "bbox": [0, 0, 50, 50], "area": 2500,
                             "iscrowd": 0}] if annotations else []}
    for split in ("train", "val"):
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    return root


def test_coco_archive_becomes_a_detection_artifact_with_scaled_boxes(tmp_path):
    folder = _coco_folder(tmp_path / "coco")
    archive = tmp_path / "coco.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in folder.rglob("*"):
            zf.write(path, path.relative_to(tmp_path))
    shutil.rmtree(folder)
    manifest = prepare_dataset(DataConfig(source="coco", path=str(archive), insize=64, val_fraction=0.0), tmp_path / "out")
    assert manifest.task == "detection" and manifest.classes == ["cat", "dog"]
    data = load_detection_dataset(tmp_path / "out")
    images, targets = data.split("test")  # instances_val became the test split
    assert images.shape == (2, 64, 64, 3)
    np.testing.assert_allclose(targets[0]["boxes"], [[20 * 0.32, 10 * 0.64, 120 * 0.32, 60 * 0.64]], rtol=1e-5)
    assert targets[0]["labels"].tolist() == [1] and targets[1]["labels"].tolist() == [2]  # ids 1, 3 -> 1, 2
    assert data.coco("test")["annotations"][0]["category_id"] == 1


def test_offline_set_has_boxes_inside_every_image(detection_dataset_dir):
    data = load_detection_dataset(detection_dataset_dir)
    for split in ("train", "test"):
        images, targets = data.split(split)
        boxes = np.concatenate([t["boxes"] for t in targets])
        labels = np.concatenate([t["labels"] for t in targets])
        assert len(boxes) >= len(images)  # 1-3 objects per image
        size = data.manifest.input_size
        assert (boxes >= 0).all() and (boxes <= size).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        assert set(labels.tolist()) <= set(range(1, 11))


def test_dataset_without_annotations_is_refused(tmp_path):
    _coco_folder(tmp_path / "coco", annotations=False)
    with pytest.raises(ArtifactError, match="no annotations"):
        prepare_dataset(DataConfig(source="coco", path=str(tmp_path / "coco"), insize=32), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_class_id_outside_the_categories_is_refused(tmp_path):
    _coco_folder(tmp_path / "coco", category_id=12)
    with pytest.raises(ArtifactError, match=r"annotation 1 has category_id 12.*\[1, 3\]"):
        prepare_dataset(DataConfig(source="coco", path=str(tmp_path / "coco"), insize=32), tmp_path / "out")


def test_coco_needs_a_path():
    with pytest.raises(ConfigError, match="DATASET_PATH"):
        DataConfig(source="coco")
