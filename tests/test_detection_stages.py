"""Detection stages on the offline set: ONNX PTQ, OpenVINO QAT, PKD/CWD distillation, GroupFisher pruning.

Each output loads with the tool the spec names and is measured with pycocotools' mAP against the FP32
detector it came from (the session's fcos_resnet18_fpn at 96 px; tests/README.md gives every threshold's
measured value and margin, and why a model that learned nothing fails it).
"""

from __future__ import annotations

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
from visioncompress.detection.runners import detection_runner
from visioncompress.distill import distill
from visioncompress.detection.prune import prune_detector
from visioncompress.errors import ArtifactError, ConfigError
from visioncompress.quantize import quantize, quantize_aware

TRAIN = TrainConfig(batch_size=8, finetune_epochs=1, learning_rate=0.001)
QUICK = BenchmarkConfig(extra_batch_sizes=[], warmup=1, iterations=3)
FIXTURE_MIN_MAP = 2.0  # the FP32 fixture's test mAP (measured 3.59) must stay far above 0.0
INT8_MAX_DELTA = 1.0  # mAP points between INT8 and FP32 (measured -0.09)
QAT_MAX_DROP = 1.0  # mAP points QAT may lose against FP32 (measured +1.43)
DISTILL_MARGIN = 1.0  # mAP points a PKD student may trail the same student trained alone (measured +0.28)


def _map(model_dir, dataset_dir) -> float:
    _, runner = detection_runner(model_dir)
    return measure_map(runner, load_detection_dataset(dataset_dir))[0]["mAP"]


@pytest.fixture(scope="module")
def fp32_map(detection_model_dir, detection_dataset_dir) -> float:
    value = _map(detection_model_dir, detection_dataset_dir)
    print(f"FP32 detection fixture: test mAP {value}")
    assert value >= FIXTURE_MIN_MAP, "the detection fixture should have learned something"
    return value


def test_onnx_ptq_end_to_end_detector_runs_in_onnxruntime_close_to_fp32(detection_model_dir, detection_dataset_dir,
                                                                        fp32_map, tmp_path):
    import onnx

    out = tmp_path / "onnx"
    metadata = quantize(detection_model_dir, detection_dataset_dir, out,
                        OnnxPTQConfig(per_channel=True, batch_size=8, activation_type="QUInt8"))
    model = onnx.load(str(out / "model.onnx"))
    assert metadata.precision == "int8" and any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    assert [o.name for o in model.graph.output] == ["boxes", "scores", "labels", "num_detections"]
    assert any(n.op_type == "NonMaxSuppression" for n in model.graph.node)
    # Post-processing stayed in floating point: every Q/DQ pair sits in the core, and the metadata lists the rest.
    fp_nodes = set(metadata.params["detection_export"]["fp_nodes"])
    assert fp_nodes and not any(n.name in fp_nodes for n in model.graph.node
                                if n.op_type in ("QuantizeLinear", "DequantizeLinear"))
    assert all(n.name.startswith("/core/") for n in model.graph.node if n.op_type == "QuantizeLinear")
    int8_map = _map(out, detection_dataset_dir)
    print(f"ONNX INT8 end-to-end test mAP {int8_map} vs FP32 {fp32_map}")
    assert abs(int8_map - fp32_map) <= INT8_MAX_DELTA


def test_openvino_qat_writes_an_int8_ir_that_keeps_map(detection_model_dir, detection_dataset_dir,
                                                       detection_short_dataset_dir, fp32_map, tmp_path):
    import openvino as ov

    out = tmp_path / "qat"  # one epoch on the 96-image cut of the training split; the same test split
    metadata = quantize_aware(detection_model_dir, detection_short_dataset_dir, out,
                              OpenVinoQATConfig(batch_size=8, transformer=False, subset_size=32), TRAIN)
    ir = ov.Core().read_model(str(out / "model.xml"))
    assert metadata.format == "openvino-ir" and metadata.precision == "int8"
    fake_quantize = [op.get_friendly_name() for op in ir.get_ops() if op.get_type_name() == "FakeQuantize"]
    assert fake_quantize and all(not name.startswith("/post/") for name in fake_quantize)
    assert [o.get_any_name() for o in ir.outputs] == ["boxes", "scores", "labels", "num_detections"]
    assert any(op.get_type_name().startswith("NonMaxSuppression") or op.get_type_name() == "NMSRotated"
               for op in ir.get_ops())
    qat_map = _map(out, detection_dataset_dir)
    print(f"OpenVINO QAT test mAP {qat_map} vs FP32 {fp32_map}")
    assert qat_map >= fp32_map - QAT_MAX_DROP


def test_pkd_student_matches_the_same_student_trained_alone(detection_model_dir, detection_dataset_dir,
                                                            detection_train_config, fp32_map, tmp_path):
    """The teacher is the fixture; the student is the same architecture with the same seed, data order, epochs
    and learning rate as the fixture, plus PKD: the fixture itself is the student trained alone."""
    out = tmp_path / "pkd"
    config = DistillConfig(teacher_model="fcos_resnet18_fpn", method="pkd",
                           epochs=detection_train_config.finetune_epochs, lr=detection_train_config.learning_rate)
    metadata = distill(detection_dataset_dir, out, ModelConfig(model="fcos_resnet18_fpn"),
                       TrainConfig(batch_size=detection_train_config.batch_size, training=False), config,
                       teacher_dir=detection_model_dir)
    history = metadata.metrics["history"]
    assert history[0]["loss_pkd_feature"] > 0 and metadata.metrics["teacher_val_mAP"] > 0
    student_map = _map(out, detection_dataset_dir)
    print(f"PKD student test mAP {student_map} vs the same student alone {fp32_map}")
    assert student_map >= fp32_map - DISTILL_MARGIN
    assert isinstance(load_torch_module(out), torch.nn.Module)


def test_cwd_distillation_trains_a_student_that_loads(detection_model_dir, detection_short_dataset_dir, tmp_path):
    out = tmp_path / "cwd"
    metadata = distill(detection_short_dataset_dir, out, ModelConfig(model="fcos_resnet18_fpn"), TRAIN,
                       DistillConfig(teacher_model="fcos_resnet18_fpn", method="cwd", epochs=1, lr=0.001,
                                     min_student_share=0.0),
                       teacher_dir=detection_model_dir)
    assert metadata.metrics["history"][0]["loss_cwd_feature"] > 0
    assert isinstance(load_torch_module(out), torch.nn.Module)


def test_a_student_that_learned_nothing_is_refused(detection_model_dir, detection_short_dataset_dir, tmp_path):
    from visioncompress.errors import TrainingError

    with pytest.raises(TrainingError, match="MIN_STUDENT_SHARE"):
        distill(detection_short_dataset_dir, tmp_path / "x", ModelConfig(model="fcos_resnet18_fpn"), TRAIN,
                DistillConfig(teacher_model="fcos_resnet18_fpn", method="pkd", epochs=1, lr=1e-9),
                teacher_dir=detection_model_dir)
    assert not (tmp_path / "x").exists()


def test_pkd_yolo_is_refused_for_torchvision_detectors(detection_model_dir, detection_dataset_dir, tmp_path):
    with pytest.raises(ConfigError, match="METHOD.*MMYOLO"):
        distill(detection_dataset_dir, tmp_path / "x", ModelConfig(model="fcos_resnet18_fpn"), TRAIN,
                DistillConfig(teacher_model="fcos_resnet18_fpn", method="pkd_yolo", epochs=1),
                teacher_dir=detection_model_dir)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("norm_type", ["act", "flops"])
def test_group_fisher_reaches_the_flop_target_and_the_model_reloads(norm_type, detection_model_dir,
                                                                    detection_short_dataset_dir, tmp_path):
    out = tmp_path / norm_type
    metadata = prune_detector(detection_model_dir, detection_short_dataset_dir, out,
                              GroupFisherConfig(interval=2, norm_type=norm_type, target_flop_ratio=0.8, epochs=2),
                              TRAIN)
    metrics = metadata.metrics
    assert metrics["flops_after"] <= 0.8 * metrics["flops_before"]
    assert metrics["params_after"] < metrics["params_before"]
    # 12 iterations per epoch, a step every 2: the deadline is the 6th step, at iteration 12
    assert metrics["target_reached_at_iteration"] is not None and metrics["target_reached_at_iteration"] <= 12
    pruned = load_torch_module(out)
    rows = benchmark(out, detection_short_dataset_dir, QUICK)
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


def test_student_floor_refuses_a_collapsed_student():
    from visioncompress.detection.distill import check_student_floor
    from visioncompress.train.engine import TrainResult
    from visioncompress.errors import TrainingError

    collapsed = TrainResult(history=[{"epoch": 1, "loss_bbox_regression": 1.0}], best_val=0.0)
    with pytest.raises(TrainingError, match="MIN_STUDENT_SHARE=0.25.*bbox_regression 1.0"):
        check_student_floor(collapsed, 12.0, 0.25)
    check_student_floor(TrainResult(best_val=3.0), 12.0, 0.25)  # at the floor: accepted
    check_student_floor(collapsed, 12.0, 0.0)  # the check turned off
    check_student_floor(collapsed, 0.5, 0.25)  # a teacher below 1 mAP gives no floor to measure against
    with pytest.raises(ConfigError, match="MIN_STUDENT_SHARE"):
        DistillConfig(teacher_model="fcos_resnet18_fpn", min_student_share=1.5)


def test_group_fisher_interval_beyond_the_pruning_half_is_refused(detection_model_dir, detection_dataset_dir,
                                                                   tmp_path):
    with pytest.raises(ConfigError, match="INTERVAL"):
        prune_detector(detection_model_dir, detection_dataset_dir, tmp_path / "x",
                       GroupFisherConfig(interval=10_000, epochs=2), TRAIN)
    assert not (tmp_path / "x").exists()
