"""OpenMMLab detectors (PLATFORM mmdet / mmyolo) through the real detection pipelines, run locally by kfp.local.

Runs only in the mm environment (`make test-mm`). Offline set (Fashion-MNIST items on photos), 64 px, random
weights, a handful of iterations: the point is the wiring (config names resolved from the packages, the user's
training settings reaching the Runner, GroupFisher's target, artifacts the benchmark measures), not accuracy.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from visioncompress.artifacts import read_model_metadata
from visioncompress.pipelines.local import run_local

pytestmark = pytest.mark.mm

TINY = {"insize": 64, "MAX_TRAIN_SAMPLES": 12, "MAX_TEST_SAMPLES": 4, "CALIBRATION_SAMPLES": 2, "VAL_FRACTION": 0.25,
        "BATCH_SIZE": 2, "WORKERS": 0, "LATENCY_BATCH_SIZES": [], "WARMUP": 1, "ITERATIONS": 2, "THREADS": 2}


def _rows(report):
    return json.loads((report.parent / "results").read_text())


def _finite_maps(rows, variants):
    for variant in variants:
        # an mm-module's FP32 is measured as itself and, for the PTQ/QAT pipelines, as its end-to-end graphs
        found = [r for r in rows if r["variant"] == variant]
        assert "mm-module" in {r["format"] for r in found}
        for row in found:
            assert row["task"] == "detection" and row["test_images"] == TINY["MAX_TEST_SAMPLES"]
            assert math.isfinite(row["mAP"]) and 0.0 <= row["mAP"] <= row["mAP50"] <= 100.0


def _reload_and_predict(model_dir, insize):
    """The artifact loads in this process (checksums verified) and detects on a plain image."""
    import numpy as np

    from visioncompress.detection.runners import detection_runner

    metadata, runner = detection_runner(model_dir, threads=1)
    out = runner.predict(np.full((1, 3, insize, insize), 0.3, np.float32))
    assert len(out) == 1 and out[0]["boxes"].reshape(-1, 4).shape[1] == 4
    assert all(1 <= int(label) <= metadata.num_classes for label in out[0]["labels"])
    state = torch.load(model_dir / "model.state.pt", weights_only=True)["state_dict"]
    assert state and all(torch.is_tensor(v) for v in state.values())
    return metadata


def test_yolox_tiny_pkd_yolo_distillation_pipeline(tmp_path):
    report = run_local("detect_distill", {
        **TINY, "PLATFORM": "mmyolo", "MODEL": "yolox_tiny_fast_8xb8-300e_coco",
        "TEACHER_MODEL": "yolox_tiny_fast_8xb8-300e_coco", "METHOD": "pkd_yolo", "EPOCHS": 1, "LR": 0.002,
        "OPTIMIZER": "AdamW", "LR_SCHEDULER": "cosine", "WEIGHT_DECAY": 0.01, "TRAINING": False}, tmp_path)
    rows = _rows(report)
    _finite_maps(rows, ("fp32", "distilled"))
    run = report.parent.parent
    student = read_model_metadata(run / "distill" / "distilled_model")
    assert student.stage == "distill" and student.format == "mm-module" and student.architecture.startswith("yolox")
    assert student.num_classes == 10 and student.input_size == 64  # num_classes from the dataset
    # the user's settings reached MMRazor's Runner: LR, and the iterations of EPOCHS=1 at BATCH_SIZE=2
    assert student.metrics["lr"] == 0.002 and student.metrics["method"] == "pkd_yolo"
    assert student.metrics["iterations"] == math.ceil(student_train_images(run) / 2)
    assert student.params["OPTIMIZER"] == "AdamW" and student.params["LR_SCHEDULER"] == "cosine"
    assert math.isfinite(student.metrics["val_mAP"]) and math.isfinite(student.metrics["teacher_val_mAP"])
    _reload_and_predict(run / "distill" / "distilled_model", 64)


def student_train_images(run) -> int:
    return json.loads((run / "data-prep" / "dataset" / "manifest.json").read_text())["splits"]["train"]


def test_retinanet_group_fisher_pruning_pipeline(tmp_path):
    report = run_local("detect_prune", {
        **TINY, "PLATFORM": "mmdet", "MODEL": "retinanet_r18_fpn_1x_coco", "TRAINING": True, "FINETUNE_EPOCHS": 1,
        "LEARNING_RATE": 0.004, "OPTIMIZER": "SGD", "INTERVAL": 1, "NORM_TYPE": "flops", "LR_RATIO": 0.5,
        "TARGET_FLOP_RATIO": 0.999, "EPOCHS": 2}, tmp_path)
    rows = _rows(report)
    _finite_maps(rows, ("fp32", "pruned"))
    run = report.parent.parent
    fp32 = read_model_metadata(run / "finetune" / "model")
    assert fp32.format == "mm-module" and fp32.metrics["lr"] == 0.004 and fp32.metrics["iterations"] >= 1
    pruned = _reload_and_predict(run / "prune-detection" / "pruned_model", 64)
    m = pruned.metrics
    assert pruned.stage == "prune" and pruned.params["NORM_TYPE"] == "flops" and pruned.params["INTERVAL"] == 1
    assert m["flop_ratio"] <= 0.999 and m["flops_after"] < m["flops_before"]  # TARGET_FLOP_RATIO reached
    assert m["params_after"] < m["params_before"]
    assert m["lr"] == pytest.approx(0.004 * 0.5)  # LEARNING_RATE x LR_RATIO while pruning
    assert m["pruning_iterations"] <= m["iterations"] == 2 * math.ceil(student_train_images(run) / 2)
    sizes = {r["variant"]: r["size_mb"] for r in rows if r["batch_size"] == 1}
    assert sizes["pruned"] < sizes["fp32"]


def test_yolox_tensorrt_ptq_pipeline_writes_the_qdq_model_the_engine_build_takes(tmp_path):
    """detect_ptq_tensorrt with PLATFORM mmyolo: the CPU half (an mm-module in, the end-to-end symmetric QDQ ONNX
    out, with the metadata ``quantize.tensorrt.build_engine`` checks) and, without TensorRT or CUDA here, the
    GPU half skipped with a notice as for the torchvision detectors."""
    from visioncompress.quantize.tensorrt import QDQ_STAGE, read_skip_notice, tensorrt_unavailable_reason

    report = run_local("detect_ptq_tensorrt", {
        **TINY, "PLATFORM": "mmyolo", "MODEL": "yolox_tiny_fast_8xb8-300e_coco", "TRAINING": False,
        "CALIBRATION_METHOD": "Entropy"}, tmp_path)
    rows = _rows(report)
    _finite_maps(rows, ("fp32",))
    qdq_row = next(r for r in rows if r["variant"] == "int8-qdq")
    assert (qdq_row["format"], qdq_row["backend"], qdq_row["precision"]) == ("onnx", "onnxruntime", "int8")
    assert math.isfinite(qdq_row["mAP"]) and qdq_row["test_images"] == TINY["MAX_TEST_SAMPLES"]
    run = report.parent.parent
    (qdq_dir,) = run.glob("qdq-onnx*/qdq_model")
    qdq = read_model_metadata(qdq_dir)
    # what build_engine checks and reads: format, stage, channels and input size for the optimization profile
    assert (qdq.format, qdq.stage, qdq.precision, qdq.channels, qdq.input_size) == ("onnx", QDQ_STAGE, "int8", 3, 64)
    assert qdq.parent["format"] == "mm-module" and qdq.params["CALIBRATION_METHOD"] == "Entropy"
    assert qdq.params["activation_type"] == "QInt8 (symmetric)"
    assert qdq.metrics["calibration_images"] == TINY["CALIBRATION_SAMPLES"]
    info = qdq.params["detection_export"]
    assert info["outputs"] == ["boxes", "scores", "labels", "num_detections"] and info["fp_node_count"] > 0
    (engine_dir,) = run.glob("build-tensorrt-engine*/engine")
    reason = tensorrt_unavailable_reason()
    if reason is not None:  # the GPU half skipped cleanly: a notice in place of the engine, no GPU rows
        assert read_skip_notice(engine_dir) == reason
        assert {r["variant"] for r in rows} == {"fp32", "int8-qdq"}


def test_yolox_tiny_openvino_qat_pipeline(tmp_path):
    """detect_qat_openvino with PLATFORM=mmyolo: NNCF's quantizers in the mm model, QAT_EPOCHS through the mm
    Runner with the user's optimizer, then one OpenVINO IR from image batch to detections that the benchmark
    measures beside the FP32 mm model."""
    import openvino as ov

    report = run_local("detect_qat_openvino", {
        **TINY, "PLATFORM": "mmyolo", "MODEL": "yolox_tiny_fast_8xb8-300e_coco", "TRAINING": False,
        "QAT_EPOCHS": 1, "QAT_LEARNING_RATE": 0.001, "OPTIMIZER": "AdamW", "SUBSET_SIZE": 2}, tmp_path)
    rows = _rows(report)
    _finite_maps(rows, ("fp32",))
    qat_row = next(r for r in rows if r["variant"] == "qat-int8")
    assert qat_row["format"] == "openvino-ir" and math.isfinite(qat_row["mAP"])
    assert qat_row["test_images"] == TINY["MAX_TEST_SAMPLES"]
    run = report.parent.parent
    out = next(p for p in run.glob("*/quantized_model") if (p / "model.json").is_file())
    qat = read_model_metadata(out)
    assert qat.stage == "qat_openvino" and qat.precision == "int8" and qat.parent["format"] == "mm-module"
    # the user's settings reached the Runner: QAT_LEARNING_RATE, OPTIMIZER, one epoch at BATCH_SIZE=2
    m = qat.metrics
    assert m["lr"] == 0.001 and m["optimizer"] == "AdamW"
    assert m["iterations"] == math.ceil(student_train_images(run) / 2)
    info = qat.params["detection_export"]
    # the post-processing is listed as FP (no quantizer there), nothing of the core is
    assert any(n.startswith("/post/") for n in info["fp_nodes"])
    assert not any(n.startswith("/core/") for n in info["fp_nodes"])
    model = ov.Core().read_model(str(out / qat.file_name))
    types = [op.get_type_name() for op in model.get_ordered_ops()]
    # an activation quantizer before every convolution of backbone, neck and head (the weights' quantizers are
    # folded into INT8 constants)
    assert types.count("FakeQuantize") == m["fake_quantize_ops"] >= types.count("Convolution") > 50
    assert any(t.startswith("NonMaxSuppression") or t.startswith("NMS") for t in types)  # NMS inside
    assert [o.get_any_name() for o in model.outputs] == ["boxes", "scores", "labels", "num_detections"]
