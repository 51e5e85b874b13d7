"""Quantization-aware training: torch FX (TorchScript INT8) and NNCF (OpenVINO IR INT8).

QAT trains on a 128-image cut of the shared dataset's training split so that an epoch takes
seconds; validation, calibration and test splits are the shared ones, so accuracy is compared
with the FP32 fixture model on the same 1000 test images.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from visioncompress.artifacts import read_dataset_manifest, read_model_metadata, write_dataset_manifest
from visioncompress.benchmark.measure import top1
from visioncompress.benchmark.runners import load_runner
from visioncompress.config import TrainConfig, from_spec
from visioncompress.config.qat import OpenVinoQATConfig, TorchQATConfig
from visioncompress.data import load_dataset
from visioncompress.errors import ConfigError, MissingDependencyError
from visioncompress.quantize.qat_openvino import (
    KERNELS_ENV, build_nncf_torch_extension, qat_openvino, use_nncf_torch_kernels,
)
from visioncompress.quantize.qat_torch import qat_torch

QAT_TRAIN_IMAGES = 128
LOOP = TrainConfig(batch_size=64)
MAX_DROP = 1.0  # top-1 points QAT may lose against FP32 (QAT also trains, so it may gain more)


@pytest.fixture(scope="module")
def qat_dataset_dir(dataset_dir, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("qat-data") / "dataset"
    shutil.copytree(dataset_dir, path)
    with np.load(path / "train.npz") as data:
        images, labels = data["images"][:QAT_TRAIN_IMAGES], data["labels"][:QAT_TRAIN_IMAGES]
    np.savez(path / "train.npz", images=images, labels=labels)
    manifest = read_dataset_manifest(path, verify=False)  # train.npz was just cut down: rewrite its checksums
    manifest.splits["train"] = len(labels)
    write_dataset_manifest(path, manifest)
    return path


@pytest.fixture(scope="module")
def fp32_top1(fp32_model_dir, qat_dataset_dir) -> float:
    _, runner = load_runner(fp32_model_dir)
    return top1(runner, load_dataset(qat_dataset_dir))[0]


@pytest.fixture(scope="module")
def torch_qat(fp32_model_dir, qat_dataset_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("qat-torch")
    metadata = qat_torch(fp32_model_dir, qat_dataset_dir, root / "model", TorchQATConfig(batch_size=64), LOOP,
                         checkpoint_dir=root / "checkpoints")
    return root, metadata


@pytest.fixture(scope="module")
def openvino_qat(fp32_model_dir, qat_dataset_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("qat-openvino")
    config = OpenVinoQATConfig(batch_size=64, subset_size=128, transformer=False)
    metadata = qat_openvino(fp32_model_dir, qat_dataset_dir, root / "model", config, LOOP,
                            checkpoint_dir=root / "checkpoints")
    return root, metadata


def test_torch_qat_is_an_int8_torchscript_model_as_accurate_as_fp32(torch_qat, qat_dataset_dir, fp32_top1):
    import torch

    root, metadata = torch_qat
    assert read_model_metadata(root / "model") == metadata
    assert (metadata.format, metadata.precision, metadata.stage) == ("torchscript", "int8", "qat_torch")
    assert metadata.params["QAT_EPOCHS"] == 1 and metadata.params["OPTIMIZER"] == "Adam"
    assert [row["epoch"] for row in metadata.metrics["history"]] == [1]

    module = torch.jit.load(str(root / "model" / "model.pt"))
    graph = str(module.graph)
    assert graph.count("quantized::conv2d") >= 15, "the convolutions should run as INT8 kernels"
    assert "quantized::linear" in graph

    _, runner = load_runner(root / "model")
    accuracy, n_images = top1(runner, load_dataset(qat_dataset_dir))
    print(f"torch QAT top-1 {accuracy:.2f} vs FP32 {fp32_top1:.2f} on {n_images} test images")
    assert n_images == 1000
    assert accuracy >= fp32_top1 - MAX_DROP


def test_torch_qat_resumes_from_its_checkpoint(torch_qat, fp32_model_dir, qat_dataset_dir, tmp_path):
    root, first = torch_qat
    shutil.copytree(root / "checkpoints", tmp_path / "checkpoints")
    config = TorchQATConfig(qat_epochs=2, batch_size=64)
    metadata = qat_torch(fp32_model_dir, qat_dataset_dir, tmp_path / "model", config, LOOP,
                         checkpoint_dir=tmp_path / "checkpoints")
    assert metadata.metrics["resumed_from_epoch"] == 1
    assert [row["epoch"] for row in metadata.metrics["history"]] == [1, 2]
    assert metadata.metrics["history"][0] == first.metrics["history"][0]
    assert load_runner(tmp_path / "model")[1].predict(load_dataset(qat_dataset_dir).example_input(2)).shape == (2, 10)


def test_openvino_qat_is_an_int8_ir_as_accurate_as_fp32(openvino_qat, qat_dataset_dir, fp32_top1):
    import openvino as ov

    root, metadata = openvino_qat
    assert read_model_metadata(root / "model") == metadata
    assert (metadata.format, metadata.precision, metadata.stage) == ("openvino-ir", "int8", "qat_openvino")
    assert metadata.params["TRANSFORMER"] is False and metadata.params["SUBSET_SIZE"] == 128

    core = ov.Core()
    model = core.read_model(str(root / "model" / "model.xml"))
    ops = [op.get_type_name() for op in model.get_ops()]
    assert ops.count("FakeQuantize") >= 15
    compiled = core.compile_model(model, "CPU")
    runtime_ops = [op.get_rt_info() for op in compiled.get_runtime_model().get_ops()]
    precisions = [info["runtimePrecision"].astype(str) for info in runtime_ops
                  if "layerType" in info and info["layerType"].astype(str) == "Convolution"]
    assert precisions and all(p in ("i8", "u8") for p in precisions), precisions

    _, runner = load_runner(root / "model")
    accuracy, n_images = top1(runner, load_dataset(qat_dataset_dir))
    print(f"OpenVINO QAT top-1 {accuracy:.2f} vs FP32 {fp32_top1:.2f} on {n_images} test images")
    assert accuracy >= fp32_top1 - MAX_DROP


def test_openvino_qat_resumes_without_recalibrating(openvino_qat, fp32_model_dir, qat_dataset_dir, tmp_path):
    root, first = openvino_qat
    shutil.copytree(root / "checkpoints", tmp_path / "checkpoints")
    layout = json.loads((tmp_path / "checkpoints" / "qat_openvino-nncf.json").read_text())
    assert layout["compression_state"], "the NNCF quantizer layout is kept next to the checkpoint"
    config = OpenVinoQATConfig(qat_epochs=2, batch_size=64, subset_size=128, transformer=False)
    metadata = qat_openvino(fp32_model_dir, qat_dataset_dir, tmp_path / "model", config, LOOP,
                            checkpoint_dir=tmp_path / "checkpoints")
    assert metadata.metrics["resumed_from_epoch"] == 1
    assert [row["epoch"] for row in metadata.metrics["history"]] == [1, 2]
    assert metadata.metrics["history"][0] == first.metrics["history"][0]
    assert load_runner(tmp_path / "model")[1].predict(load_dataset(qat_dataset_dir).example_input(2)).shape == (2, 10)


@pytest.mark.parametrize("cls, params, parameter", [
    (TorchQATConfig, {"QAT_EPOCHS": 0}, "QAT_EPOCHS"),
    (TorchQATConfig, {"QAT_LEARNING_RATE": -1e-4}, "QAT_LEARNING_RATE"),
    (TorchQATConfig, {"BATCH_SIZE": 1.5}, "BATCH_SIZE"),
    (TorchQATConfig, {"QUANTIZED_ENGINE": "tensorrt"}, "QUANTIZED_ENGINE"),
    (OpenVinoQATConfig, {"TRANSFORMER": "maybe"}, "TRANSFORMER"),
    (OpenVinoQATConfig, {"SUBSET_SIZE": 0}, "SUBSET_SIZE"),
    (OpenVinoQATConfig, {"QAT_EPOCHS": "two"}, "QAT_EPOCHS"),
    (OpenVinoQATConfig, {"QAT_EPOCH": 2}, "QAT_EPOCH"),
])
def test_bad_parameters_name_the_parameter(cls, params, parameter):
    with pytest.raises(ConfigError) as excinfo:
        from_spec(cls, params)
    assert excinfo.value.parameter == parameter
    assert parameter in str(excinfo.value)


def test_spec_defaults():
    assert from_spec(TorchQATConfig, {}) == TorchQATConfig(1, 1e-4, 1, "auto")
    config = from_spec(OpenVinoQATConfig, {"TRANSFORMER": "False", "QAT LEARNING RATE": 1e-5})
    assert (config.transformer, config.qat_learning_rate, config.subset_size) == (False, 1e-5, 300)


def test_nncf_kernel_choice(monkeypatch):
    from nncf.torch.quantization.extensions import QuantizedFunctionsCPU
    from nncf.torch.quantization.reference import ReferenceQuantizedFunctions

    with pytest.raises(ConfigError) as excinfo:
        use_nncf_torch_kernels("fast")
    assert excinfo.value.parameter == KERNELS_ENV
    monkeypatch.delenv(KERNELS_ENV, raising=False)
    assert use_nncf_torch_kernels() == "reference"
    assert QuantizedFunctionsCPU.get("Quantize_forward") is ReferenceQuantizedFunctions.Quantize_forward


def test_nncf_extension_needs_a_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-c++"))
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "extensions"))
    monkeypatch.setenv("NNCF_EXTENSION_LOAD_TIMEOUT", "600")
    with pytest.raises(MissingDependencyError, match="C\\+\\+ compiler"):
        build_nncf_torch_extension()


@pytest.mark.slow
def test_nncf_extension_builds_and_matches_the_reference_kernels():
    import torch
    from nncf.torch.quantization.extensions import QuantizedFunctionsCPU
    from nncf.torch.quantization.reference import ReferenceQuantizedFunctions

    try:
        build_dir = build_nncf_torch_extension()
        assert list(build_dir.glob("quantized_functions_cpu*.so"))
        x, low, span = torch.randn(4, 8, 5, 5), torch.tensor([-1.0]), torch.tensor([2.0])
        built = QuantizedFunctionsCPU.get("Quantize_forward")(x, low, span, 256)
        assert torch.equal(built, ReferenceQuantizedFunctions.Quantize_forward(x, low, span, 256))
    finally:
        use_nncf_torch_kernels("reference")
