"""Detection stages on the offline set: ONNX PTQ, OpenVINO QAT, PKD/CWD distillation, GroupFisher pruning.

Each output loads with the tool the spec names and is measured with pycocotools' mAP against the FP32
detector it came from (a small, briefly trained fcos_resnet18_fpn at 64 px, so the mAP itself is low).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visioncompress.artifacts import read_model_metadata
from visioncompress.benchmark.run import benchmark
from visioncompress.config import (
    BenchmarkConfig, DistillConfig, GroupFisherConfig, ModelConfig, OnnxPTQConfig, OpenVinoQATConfig, TrainConfig,
)
from visioncompress.detection.benchmark import measure_map
from visioncompress.models import load_torch_module
from visioncompress.detection.data import load_detection_dataset
from visioncompress.detection.heads import DetectorCore
from visioncompress.detection.runners import detection_runner
from visioncompress.distill import distill
from visioncompress.detection.prune import prune_detector
from visioncompress.errors import ArtifactError, ConfigError
from visioncompress.quantize import quantize, quantize_aware

TRAIN = TrainConfig(batch_size=8, finetune_epochs=1, learning_rate=0.001)
QUICK = BenchmarkConfig(extra_batch_sizes=[], warmup=1, iterations=3)


def _map(model_dir, dataset_dir) -> float:
    _, runner = detection_runner(model_dir)
    return measure_map(runner, load_detection_dataset(dataset_dir))[0]["mAP"]


@pytest.fixture(scope="module")
def fp32_map(detection_model_dir, detection_dataset_dir) -> float:
    return _map(detection_model_dir, detection_dataset_dir)


def test_onnx_ptq_core_runs_in_onnxruntime_close_to_fp32(detection_model_dir, detection_dataset_dir, fp32_map, tmp_path):
    import onnx
    import onnxruntime as ort

    out = tmp_path / "onnx"
    metadata = quantize(detection_model_dir, detection_dataset_dir, out, OnnxPTQConfig(per_channel=True, batch_size=8))
    model = onnx.load(str(out / "model.onnx"))
    assert metadata.precision == "int8" and any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    assert [o.name for o in model.graph.output] == ["cls_logits", "bbox_regression", "bbox_ctrness"]
    # The INT8 core's raw outputs follow the FP32 core's.
    data = load_detection_dataset(detection_dataset_dir)
    images, _ = next(data.batches("test", 4))
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    int8_logits = session.run(["cls_logits"], {"input": images.numpy()})[0]
    fp32_logits = DetectorCore(load_torch_module(detection_model_dir))(images)[0]
    correlation = np.corrcoef(int8_logits.ravel(), fp32_logits.detach().numpy().ravel())[0, 1]
    assert correlation > 0.98
    assert abs(_map(out, detection_dataset_dir) - fp32_map) <= 1.0


def test_openvino_qat_writes_an_int8_ir_that_keeps_map(detection_model_dir, detection_dataset_dir, fp32_map, tmp_path):
    import openvino as ov

    out = tmp_path / "qat"
    metadata = quantize_aware(detection_model_dir, detection_dataset_dir, out,
                              OpenVinoQATConfig(batch_size=8, transformer=False, subset_size=32), TRAIN)
    ir = ov.Core().read_model(str(out / "model.xml"))
    assert metadata.format == "openvino-ir" and metadata.precision == "int8"
    assert any(op.get_type_name() == "FakeQuantize" for op in ir.get_ops())
    assert len(ir.outputs) == 3
    assert _map(out, detection_dataset_dir) >= fp32_map - 1.0


@pytest.mark.parametrize("method", ["pkd", "cwd"])
def test_feature_distillation_trains_a_student_that_loads(method, detection_model_dir, detection_dataset_dir, tmp_path):
    out = tmp_path / method
    metadata = distill(detection_dataset_dir, out, ModelConfig(model="fcos_resnet18_fpn"), TRAIN,
                       DistillConfig(teacher_model="fcos_resnet18_fpn", method=method, epochs=1, lr=0.001),
                       teacher_dir=detection_model_dir)
    history = metadata.metrics["history"]
    assert history and history[0][f"loss_{method}_feature"] > 0
    assert metadata.metrics["teacher_val_mAP"] is not None
    student = load_torch_module(out)
    assert isinstance(student, torch.nn.Module)


def test_pkd_yolo_is_refused_for_torchvision_detectors(detection_model_dir, detection_dataset_dir, tmp_path):
    with pytest.raises(ConfigError, match="METHOD.*MMYOLO"):
        distill(detection_dataset_dir, tmp_path / "x", ModelConfig(model="fcos_resnet18_fpn"), TRAIN,
                DistillConfig(teacher_model="fcos_resnet18_fpn", method="pkd_yolo", epochs=1),
                teacher_dir=detection_model_dir)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("norm_type", ["act", "flops"])
def test_group_fisher_reaches_the_flop_target_and_the_model_reloads(norm_type, detection_model_dir,
                                                                    detection_dataset_dir, tmp_path):
    out = tmp_path / norm_type
    metadata = prune_detector(detection_model_dir, detection_dataset_dir, out,
                              GroupFisherConfig(interval=2, norm_type=norm_type, target_flop_ratio=0.8, epochs=2),
                              TRAIN)
    metrics = metadata.metrics
    assert metrics["flops_after"] <= 0.8 * metrics["flops_before"]
    assert metrics["params_after"] < metrics["params_before"]
    assert metrics["target_reached_at_iteration"] is not None
    pruned = load_torch_module(out)
    rows = benchmark(out, detection_dataset_dir, QUICK)
    assert rows[0]["variant"] == "fp32" and "mAP" in rows[0] and rows[0]["p50_ms"] > 0
    assert sum(p.numel() for p in pruned.parameters()) == metrics["params_after"]


def test_bad_pruning_parameters_fail_before_work():
    with pytest.raises(ConfigError, match="TARGET_FLOP_RATIO"):
        GroupFisherConfig(target_flop_ratio=1.5)
    with pytest.raises(ConfigError, match="TARGET_FLOP_RATIO"):
        GroupFisherConfig(target_flop_ratio=0)
    with pytest.raises(ConfigError, match="NORM_TYPE"):
        GroupFisherConfig(norm_type="l1")


def test_fp32_benchmark_measures_map_in_three_runtimes(detection_model_dir, detection_dataset_dir):
    rows = benchmark(detection_model_dir, detection_dataset_dir, QUICK, fp32_runtimes=("onnxruntime", "openvino"))
    assert {r["backend"] for r in rows} == {"torch", "onnxruntime", "openvino"}
    maps = {r["backend"]: r["mAP"] for r in rows}
    assert max(maps.values()) - min(maps.values()) <= 0.5  # the same FP32 detector in every runtime
    assert read_model_metadata(detection_model_dir).task == "detection"


def test_classification_model_against_detection_data_is_refused(fp32_model_dir, detection_dataset_dir, tmp_path):
    with pytest.raises(ArtifactError, match="detection"):
        quantize(fp32_model_dir, detection_dataset_dir, tmp_path / "x", OnnxPTQConfig())
