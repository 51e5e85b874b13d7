"""Per-operator profiles (what the benchmark writes beside a missed target): each runtime's own profiler on a real
model, its time grouped by operator, the convolutions on top."""

from __future__ import annotations

import openvino as ov
import pytest
import torch

from visioncompress.benchmark.profile import onnxruntime_profile, openvino_profile, torch_profile
from visioncompress.benchmark.runners import load_runner, torchscript_frozen
from visioncompress.config import TorchPTQConfig
from visioncompress.data import load_dataset
from visioncompress.models import load_torch_module
from visioncompress.quantize import quantize
from visioncompress.quantize.onnx import export_onnx
from visioncompress.quantize.openvino import convert_to_openvino


@pytest.fixture(scope="module")
def inputs(fp32_model_dir, dataset_dir):
    dataset = load_dataset(dataset_dir)
    module = load_torch_module(fp32_model_dir).eval()
    return module, torch.from_numpy(dataset.example_input(1)), dataset.example_input(8)


def _check(ops: list[dict], expected: str) -> None:
    assert 1 <= len(ops) <= 8 and all(o["ms"] >= 0 for o in ops)
    assert abs(sum(o["share"] for o in ops) - 1.0) <= 0.2, ops  # the top 8 hold nearly all of a resnet's time
    assert expected in ops[0]["op"].lower(), ops  # a resnet's time is in its convolutions


def test_torch_profile_names_the_int8_and_fp32_convolutions(inputs, fp32_model_dir, dataset_dir, tmp_path):
    module, example, batch = inputs
    _check(torch_profile(torchscript_frozen(module, example), batch, threads=2), "conv")
    quantize(fp32_model_dir, dataset_dir, tmp_path / "int8", TorchPTQConfig(batch_size=32))
    int8 = torch_profile(load_runner(tmp_path / "int8")[1].module, batch, threads=2)
    _check(int8, "quantized::conv2d")


def test_onnxruntime_and_openvino_profiles(inputs, tmp_path):
    module, example, batch = inputs
    _check(onnxruntime_profile(export_onnx(module, example, tmp_path / "m.onnx"), batch, threads=2), "conv")
    ov.save_model(convert_to_openvino(module, example), str(tmp_path / "m.xml"), compress_to_fp16=False)
    ops = openvino_profile(tmp_path / "m.xml", batch, threads=2, precision="fp32")
    _check(ops, "convolution")
    assert all(o["op"].endswith("f32") or "unknown" in o["op"] for o in ops), ops  # the f32 hint ran FP32 kernels
