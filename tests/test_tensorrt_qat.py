"""TensorRTQAT (pipeline qat_tensorrt): QAT in TensorRT's INT8 form exported as a QDQ ONNX model (CPU half, here),
then the TensorRT engine from it (GPU half, wherever TensorRT and CUDA exist; skipped with the reason elsewhere).

QAT trains on a 128-image cut of the shared dataset's training split; the FP32 fixture model (resnet18, 77 %) is
the starting point and the accuracy is measured on the same 1000 test images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import numpy_helper

from visioncompress.benchmark.measure import top1
from visioncompress.benchmark.runners import load_runner
from visioncompress.config import TrainConfig
from visioncompress.config.qat import TensorRTQATConfig
from visioncompress.config.tensorrt import TensorRTConfig
from visioncompress.data import load_dataset
from visioncompress.errors import MissingDependencyError
from visioncompress.quantize.qat_tensorrt import qat_qdq_onnx
from visioncompress.quantize.tensorrt import build_engine, tensorrt_unavailable_reason

MAX_TOP1_DROP = 1.0  # points on 1000 held-out test images (QAT also trains, so it may gain)
TRT_MISSING = tensorrt_unavailable_reason()


@pytest.fixture(scope="module")
def qat_qdq(fp32_model_dir, dataset_dir, cut_split, tmp_path_factory):
    root = tmp_path_factory.mktemp("trt-qat")
    data = cut_split(dataset_dir, root / "dataset", {"train": 128})
    metadata = qat_qdq_onnx(fp32_model_dir, data, root / "qdq", TensorRTQATConfig(batch_size=64),
                            TrainConfig(batch_size=64, workers=0), checkpoint_dir=root / "checkpoints")
    return root / "qdq", metadata


def test_qat_writes_a_symmetric_int8_qdq_onnx_model_with_per_channel_weights(qat_qdq):
    out, metadata = qat_qdq
    assert (metadata.stage, metadata.format, metadata.precision) == ("qat_qdq_onnx", "onnx", "int8")
    assert metadata.params["QAT_EPOCHS"] == 1 and len(metadata.metrics["history"]) == 1
    model = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(model)
    nodes, inits = model.graph.node, {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    values = dict(inits)
    for n in nodes:  # torch's exporter shares constants through Constant and Identity nodes
        if n.op_type == "Constant":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        elif n.op_type == "Identity" and n.input[0] in values:
            values[n.output[0]] = values[n.input[0]]
    q_and_dq = [n for n in nodes if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    zero_points = [values[n.input[2]] for n in q_and_dq if len(n.input) > 2 and n.input[2] in values]
    assert len(zero_points) == len(q_and_dq), "every Q/DQ has a constant zero point"
    assert all(z.dtype == np.int8 and not z.any() for z in zero_points), "INT8, symmetric (zero point 0)"
    dq = {n.output[0]: n for n in nodes if n.op_type == "DequantizeLinear"}
    q = {n.output[0]: n for n in nodes if n.op_type == "QuantizeLinear"}
    convs = [n for n in nodes if n.op_type == "Conv"]
    assert len(convs) == 20  # resnet18: every convolution (batch norm folded into it)
    for conv in convs:
        assert conv.input[0] in dq, f"{conv.name}: the activation comes through Q/DQ"
        weight_dq = dq[conv.input[1]]
        axis = {a.name: a.i for a in weight_dq.attribute}.get("axis")
        scale = values[weight_dq.input[1]]
        assert axis == 0 and scale.ndim == 1 and scale.size > 1, f"{conv.name}: per-channel weight scales"
        assert weight_dq.input[0] in q, conv.name  # weights fake-quantized in the graph, as TensorRT takes them
    assert metadata.metrics["quantize_linear_nodes"] == len(q)


def test_the_qdq_model_runs_in_onnxruntime_as_accurate_as_fp32(qat_qdq, fp32_model_dir, dataset_dir):
    out, _ = qat_qdq
    dataset = load_dataset(dataset_dir)
    fp32, n = top1(load_runner(fp32_model_dir)[1], dataset)
    runner = load_runner(out)[1]
    assert runner.predict(dataset.example_input(3)).shape == (3, 10)  # dynamic batch axis
    accuracy, n = top1(runner, dataset)
    print(f"TensorRT QAT QDQ ONNX (onnxruntime CPU) top-1 {accuracy:.2f} vs FP32 {fp32:.2f} on {n} images")
    assert n == 1000 and accuracy >= fp32 - MAX_TOP1_DROP


@pytest.mark.skipif(TRT_MISSING is None, reason="TensorRT and CUDA are present on this machine")
def test_engine_build_without_tensorrt_stops_with_one_line(qat_qdq, tmp_path):
    out, _ = qat_qdq
    with pytest.raises(MissingDependencyError, match="TensorRT cannot run on this node"):
        build_engine(out, tmp_path / "engine", TensorRTConfig())
    assert not (tmp_path / "engine").exists()


@pytest.mark.skipif(TRT_MISSING is not None, reason=f"TensorRT GPU half not testable here: {TRT_MISSING}")
def test_engine_builds_from_the_qat_model(qat_qdq, tmp_path):
    out, _ = qat_qdq
    metadata = build_engine(out, tmp_path / "engine", TensorRTConfig())
    assert metadata.format == "tensorrt-engine" and (tmp_path / "engine" / "model.engine").stat().st_size > 0


def test_qat_tensorrt_pipeline_trains_on_cpu_and_builds_the_engine_on_gpu_nodes(tmp_path):
    from kfp import compiler

    from visioncompress.pipelines.qat_tensorrt import qat_tensorrt
    from visioncompress.settings import load_settings

    path = tmp_path / "qat_tensorrt.yaml"
    compiler.Compiler().compile(qat_tensorrt, str(path))
    spec, platform = yaml.safe_load_all(path.read_text())
    executors = spec["deploymentSpec"]["executors"]
    placed = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    settings = load_settings()
    gpu = {"exec-build-tensorrt-engine", "exec-benchmark-gpu"}
    assert gpu <= set(executors) and "exec-qat-qdq-onnx" in executors and "exec-qdq-onnx" not in executors
    for name in gpu:
        assert executors[name]["container"]["image"] == settings.image_gpu
        assert executors[name]["container"]["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert placed[name]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    # the QAT step is a training step: CPU pool by default (its TRAIN_ON_GPU branch is the GPU image's)
    assert executors["exec-qat-qdq-onnx"]["container"]["image"] == settings.image_cpu
    assert placed["exec-qat-qdq-onnx"]["nodeSelector"]["labels"] == {"kubernetes.io/arch": "amd64"}
