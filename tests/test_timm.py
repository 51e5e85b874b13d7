"""timm classifiers (PLATFORM=timm) through fine-tuning, ViT head pruning, ONNX Runtime PTQ and distillation.

A DeiT-tiny at 32 px (2 x 2 patches of 16) with random weights on the small Fashion-MNIST split: these tests
check that every stage takes timm's modules and writes artifacts that reload, not what DeiT can learn.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("timm")

from visioncompress.artifacts import read_model_metadata  # noqa: E402
from visioncompress.config import DataConfig, DistillConfig, ModelConfig, OnnxPTQConfig, TrainConfig  # noqa: E402
from visioncompress.config.prune import PruneConfig  # noqa: E402
from visioncompress.data import load_dataset, prepare_dataset  # noqa: E402
from visioncompress.errors import ConfigError  # noqa: E402
from visioncompress.models import load_torch_module  # noqa: E402
from visioncompress.prune import prune  # noqa: E402
from visioncompress.quantize import quantize  # noqa: E402
from visioncompress.train import finetune  # noqa: E402

DEIT = "deit_tiny_patch16_224"
NO_TRAINING = TrainConfig(training=False, batch_size=64, workers=0)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("timm-data") / "dataset"
    prepare_dataset(DataConfig(insize=32, max_train_samples=320, max_test_samples=100, calibration_samples=32,
                               seed=0), path)
    return path


@pytest.fixture(scope="module")
def deit_dir(small_dataset, tmp_path_factory) -> Path:
    """A timm DeiT-tiny model artifact written by the fine-tune stage (no training: random weights)."""
    path = tmp_path_factory.mktemp("timm-model") / "fp32"
    finetune(small_dataset, path, ModelConfig(model=DEIT, platform="timm"), NO_TRAINING)
    return path


def test_the_finetune_stage_writes_a_timm_model_that_reloads(deit_dir):
    import timm

    metadata = read_model_metadata(deit_dir)
    assert metadata.params["PLATFORM"] == "timm" and metadata.architecture == DEIT
    model = load_torch_module(deit_dir)
    assert isinstance(model, timm.models.vision_transformer.VisionTransformer)
    assert model.patch_embed.img_size == (32, 32) and model.head.out_features == 10


def test_timm_vit_loses_whole_heads_and_reloads(deit_dir, small_dataset, tmp_path):
    metadata = prune(deit_dir, small_dataset, tmp_path / "pruned", PruneConfig(target_prune_rate=0.4),
                     NO_TRAINING)
    m = metadata.metrics
    assert m["attention_heads_before"] == [3] * 12
    assert all(after < 3 for after in m["attention_heads_after"])
    assert abs(m["param_reduction"] - 0.4) <= 0.03
    model = load_torch_module(tmp_path / "pruned").eval()
    for block, heads in zip(model.blocks, m["attention_heads_after"]):
        attn = block.attn
        assert attn.num_heads == heads and attn.head_dim == 64  # whole heads go, the survivors keep their size
        assert attn.qkv.out_features == 3 * heads * 64 == 3 * attn.attn_dim
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_timm_vit_onnx_int8_runs_and_keeps_its_predictions(deit_dir, small_dataset, tmp_path):
    import numpy as np
    import onnxruntime as ort

    metadata = quantize(deit_dir, small_dataset, tmp_path / "int8", OnnxPTQConfig(activation_type="QUInt8",
                                                                                 batch_size=16))
    dataset = load_dataset(small_dataset)
    x, _ = next(dataset.batches("test", 64))
    session = ort.InferenceSession(str(tmp_path / "int8" / metadata.file_name), providers=["CPUExecutionProvider"])
    int8 = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.inference_mode():
        fp32 = load_torch_module(deit_dir).eval()(torch.from_numpy(x)).numpy()
    agreement = float(np.mean(int8.argmax(1) == fp32.argmax(1)))
    assert agreement >= 0.8, agreement


def test_a_timm_teacher_distils_into_a_torchvision_student(small_dataset, tmp_path):
    config = DistillConfig(teacher_model=DEIT, teacher_platform="timm", epochs=1)
    metadata = distill_once(small_dataset, tmp_path, config)
    assert metadata.parent["teacher"] == DEIT and metadata.architecture == "resnet18"
    assert len(metadata.metrics["history"]) == 1
    with torch.inference_mode():
        assert load_torch_module(tmp_path / "student")(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def distill_once(dataset, tmp_path, config):
    from visioncompress.distill.classification import distill

    return distill(dataset, tmp_path / "student", ModelConfig(model="resnet18"),
                   TrainConfig(batch_size=64, finetune_epochs=0, training=False, workers=0), config)


def test_unknown_timm_names_and_mm_platforms_are_refused_with_the_parameter():
    with pytest.raises(ConfigError, match="MODEL='deit_huge_nonexistent' is not allowed; expected a timm model name"):
        ModelConfig(model="deit_huge_nonexistent", platform="timm")
    with pytest.raises(ConfigError, match="PLATFORM='mmdetection' is not allowed"):
        ModelConfig(model="resnet18", platform="mmdetection")
    with pytest.raises(ConfigError, match="MODEL='resnet18' is not allowed; expected an mmdet config name"):
        ModelConfig(model="resnet18", platform="mmdet")  # mmdet / mmyolo take the packages' config names
    with pytest.raises(ConfigError, match="TEACHER_MODEL='vgg16_tv' is not allowed; expected a timm model name"):
        DistillConfig(teacher_model="vgg16_tv", teacher_platform="timm")
