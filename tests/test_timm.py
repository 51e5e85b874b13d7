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


# --- timm through every classification backend -----------------------------------------------------------------
# A trained timm CNN: timm's resnet18 names its layers as torchvision's does, so the session's fine-tuned resnet18
# (77 % top-1) loads into it through CUSTOM_MODEL_PATH, as a user's own checkpoint would: INT8 accuracy is then
# measured against a model that has learned something, on the session's 1000 test images.
INT8_MAX_DROP = 2.0  # top-1 points an INT8 timm CNN may lose against its FP32 model


@pytest.fixture(scope="module")
def timm_resnet_dir(fp32_model_dir, dataset_dir, tmp_path_factory) -> Path:
    from visioncompress.config import from_spec

    root = tmp_path_factory.mktemp("timm-resnet")
    torch.save(load_torch_module(fp32_model_dir).state_dict(), root / "weights.pt")
    model = from_spec(ModelConfig, {"MODEL": "resnet18", "PLATFORM": "timm", "CUSTOM_MODEL_PATH": str(root / "weights.pt")})
    finetune(dataset_dir, root / "fp32", model, TrainConfig(training=False, batch_size=64, workers=0))
    return root / "fp32"


@pytest.fixture(scope="module")
def timm_resnet_top1(timm_resnet_dir, dataset_dir) -> float:
    from visioncompress.benchmark.measure import top1
    from visioncompress.benchmark.runners import load_runner

    return top1(load_runner(timm_resnet_dir)[1], load_dataset(dataset_dir))[0]


def measured_top1(model_dir, dataset_dir) -> float:
    from visioncompress.benchmark.measure import top1
    from visioncompress.benchmark.runners import load_runner

    return top1(load_runner(model_dir)[1], load_dataset(dataset_dir))[0]


def test_the_timm_cnn_is_timms_and_as_accurate_as_the_checkpoint(timm_resnet_dir, timm_resnet_top1):
    import timm

    assert isinstance(load_torch_module(timm_resnet_dir), timm.models.resnet.ResNet)
    assert read_model_metadata(timm_resnet_dir).params["PLATFORM"] == "timm"
    assert timm_resnet_top1 > 60.0, timm_resnet_top1  # the checkpoint's weights, not random ones (10 %)


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_timm_cnn_int8_on_torch_and_openvino_keeps_its_accuracy(backend, timm_resnet_dir, dataset_dir,
                                                                timm_resnet_top1, tmp_path):
    from visioncompress.config import OpenVinoPTQConfig, TorchPTQConfig

    config = TorchPTQConfig(batch_size=32) if backend == "torch" else OpenVinoPTQConfig(transformer=False,
                                                                                     subset_size=128)
    metadata = quantize(timm_resnet_dir, dataset_dir, tmp_path / "int8", config)
    assert metadata.precision == "int8" and metadata.params.get("PLATFORM", "timm") == "timm"
    accuracy = measured_top1(tmp_path / "int8", dataset_dir)
    print(f"timm resnet18 {backend} INT8 top-1 {accuracy:.2f} vs FP32 {timm_resnet_top1:.2f}")
    assert accuracy >= timm_resnet_top1 - INT8_MAX_DROP


def vit_logits_agreement(int8_dir, fp32_dir, dataset_dir) -> tuple[float, float]:
    """(argmax agreement, cosine similarity of the logits) of an INT8 ViT with its FP32 model on 64 test images."""
    import numpy as np
    from visioncompress.benchmark.runners import load_runner

    x, _ = next(load_dataset(dataset_dir).batches("test", 64))
    int8 = load_runner(int8_dir)[1].predict(x)
    with torch.inference_mode():
        fp32 = load_torch_module(fp32_dir).eval()(torch.from_numpy(x)).numpy()
    cosine = float(np.mean(np.sum(int8 * fp32, 1) / (np.linalg.norm(int8, axis=1) * np.linalg.norm(fp32, axis=1))))
    return float(np.mean(int8.argmax(1) == fp32.argmax(1))), cosine


def test_timm_vit_torch_int8_quantizes_its_linear_layers(deit_dir, small_dataset, tmp_path):
    from visioncompress.config import TorchPTQConfig

    quantize(deit_dir, small_dataset, tmp_path / "int8", TorchPTQConfig(batch_size=16))
    graph = str(torch.jit.load(str(tmp_path / "int8" / "model.pt")).graph)
    assert graph.count("quantized::linear") >= 12 * 4  # qkv, proj, fc1, fc2 in each of the 12 blocks
    agreement, cosine = vit_logits_agreement(tmp_path / "int8", deit_dir, small_dataset)
    print(f"DeiT-tiny torch INT8: argmax agreement {agreement:.2f}, logits cosine {cosine:.4f}")
    assert cosine >= 0.85  # measured 0.92 (random weights: small, noisy logits); an unrelated output is near 0


def test_timm_vit_openvino_int8_uses_nncfs_transformer_type(deit_dir, small_dataset, tmp_path):
    import openvino as ov
    from visioncompress.config import OpenVinoPTQConfig

    metadata = quantize(deit_dir, small_dataset, tmp_path / "int8", OpenVinoPTQConfig(transformer=True, subset_size=32))
    assert metadata.params["TRANSFORMER"] is True
    model = ov.Core().read_model(str(tmp_path / "int8" / "model.xml"))
    quantized_matmuls = [op for op in model.get_ops() if op.get_type_name() == "MatMul"
                         and any(i.get_source_output().get_node().get_type_name() == "FakeQuantize"
                                 for i in op.inputs())]
    assert len(quantized_matmuls) >= 12 * 4
    agreement, cosine = vit_logits_agreement(tmp_path / "int8", deit_dir, small_dataset)
    print(f"DeiT-tiny OpenVINO INT8: argmax agreement {agreement:.2f}, logits cosine {cosine:.4f}")
    assert cosine >= 0.95


@pytest.mark.slow  # QAT of a trained timm resnet18 and a DeiT-tiny: minutes on 2 cores
@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_timm_qat_on_torch_and_openvino(backend, timm_resnet_dir, dataset_dir, timm_resnet_top1, deit_dir,
                                        small_dataset, cut_split, tmp_path):
    from visioncompress.config.qat import OpenVinoQATConfig, TorchQATConfig
    from visioncompress.quantize import quantize_aware

    loop = TrainConfig(batch_size=64, workers=0)
    cnn = (TorchQATConfig(batch_size=64) if backend == "torch"
           else OpenVinoQATConfig(batch_size=64, subset_size=128, transformer=False))
    short = cut_split(dataset_dir, tmp_path / "short", {"train": 128})  # QAT trains on 128 images, as test_qat's
    quantize_aware(timm_resnet_dir, short, tmp_path / "cnn", cnn, loop)
    accuracy = measured_top1(tmp_path / "cnn", dataset_dir)
    print(f"timm resnet18 {backend} QAT top-1 {accuracy:.2f} vs FP32 {timm_resnet_top1:.2f}")
    assert accuracy >= timm_resnet_top1 - INT8_MAX_DROP
    vit = (TorchQATConfig(batch_size=32) if backend == "torch"
           else OpenVinoQATConfig(batch_size=32, subset_size=32, transformer=True))
    metadata = quantize_aware(deit_dir, small_dataset, tmp_path / "vit", vit, TrainConfig(batch_size=32, workers=0))
    assert metadata.precision == "int8" and len(metadata.metrics["history"]) == 1
    from visioncompress.benchmark.runners import load_runner

    x, _ = next(load_dataset(small_dataset).batches("test", 8))
    assert load_runner(tmp_path / "vit")[1].predict(x).shape == (8, 10)
