"""Detection pipelines: compiled, checked before work, reachable from nyuntam job files, and run locally."""

from __future__ import annotations

import json

import pytest

from visioncompress.pipelines.local import run_local
from visioncompress.pipelines.registry import validate_pipeline_params
from visioncompress.artifacts import read_model_metadata
from visioncompress.config.jobfile import map_job
from visioncompress.errors import ConfigError

DETECTION_PIPELINES = ("detect_ptq_onnx", "detect_ptq_openvino", "detect_ptq_tensorrt", "detect_qat_openvino",
                       "detect_distill", "detect_prune")
TINY = {"insize": 64, "MAX_TRAIN_SAMPLES": 48, "MAX_TEST_SAMPLES": 16, "CALIBRATION_SAMPLES": 16, "BATCH_SIZE": 8}


@pytest.mark.parametrize("name", DETECTION_PIPELINES)
def test_defaults_validate(name):
    params = validate_pipeline_params(name, {})
    assert params["DATASET_SOURCE"] == "fashion-mnist-detection" and params["MODEL"] == "fcos_resnet18_fpn"


MM_YOLO = {"PLATFORM": "mmyolo", "MODEL": "yolox_tiny_fast_8xb8-300e_coco", "TEACHER_MODEL": "yolox_s_fast_8xb8-300e_coco",
           "METHOD": "pkd_yolo"}


def test_openmmlab_detectors_validate_in_distill_and_prune():
    """PLATFORM mmdet / mmyolo with the packages' config names; no mm import (the mapping runs anywhere)."""
    assert validate_pipeline_params("detect_distill", MM_YOLO)["MODEL"] == "yolox_tiny_fast_8xb8-300e_coco"
    params = validate_pipeline_params("detect_prune", {"PLATFORM": "mmdet", "MODEL": "retinanet_r50_fpn_1x_coco"})
    assert params["PLATFORM"] == "mmdet" and params["TARGET_FLOP_RATIO"] == 0.5
    # the PTQ and QAT stages hand an mm-module to detection.mm
    for name in ("detect_ptq_onnx", "detect_ptq_openvino", "detect_ptq_tensorrt", "detect_qat_openvino"):
        assert validate_pipeline_params(name, {"PLATFORM": "mmyolo", "MODEL": "yolox_tiny_fast_8xb8-300e_coco"})[
            "PLATFORM"] == "mmyolo"


@pytest.mark.parametrize("name,params,parameter", [
    ("detect_distill", {"METHOD": "pkd_yolo"}, "METHOD"),
    ("detect_prune", {"TARGET_FLOP_RATIO": 1.2}, "TARGET_FLOP_RATIO"),
    ("detect_prune", {"TARGET_FLOP_RATIO": 0}, "TARGET_FLOP_RATIO"),
    ("detect_prune", {"NORM_TYPE": "l2"}, "NORM_TYPE"),
    ("detect_ptq_onnx", {"MODEL": "resnet18"}, "MODEL"),
    ("detect_ptq_onnx", {"DATASET_SOURCE": "fashion-mnist"}, "DATASET_SOURCE"),
    ("detect_ptq_openvino", {"MAX_ACCURACY_DROP": -1}, "MAX_ACCURACY_DROP"),
    ("detect_ptq_tensorrt", {"IOU": 1.5}, "IOU"),
    ("detect_qat_openvino", {"MODEL": "fasterrcnn_resnet50_fpn"}, "MODEL"),
    ("ptq_onnx", {"MODEL": "fcos_resnet18_fpn"}, "MODEL"),
    ("detect_distill", {"TEACHER_MODEL": "vgg16"}, "TEACHER_MODEL"),
    # OpenMMLab detectors (PLATFORM mmdet / mmyolo): config names, their method, their pool
    ("detect_prune", {"PLATFORM": "mmdet", "MODEL": "fcos_resnet18_fpn"}, "MODEL"),
    ("detect_distill", {"PLATFORM": "mmdet", "MODEL": "retinanet_r18_fpn_1x_coco"}, "TEACHER_MODEL"),
    ("detect_distill", {**MM_YOLO, "METHOD": "pkd"}, "METHOD"),
    ("detect_distill", {**MM_YOLO, "TEACHER_MODEL": "fcos_resnet34_fpn", "TEACHER_PLATFORM": "torchvision"},
     "TEACHER_PLATFORM"),
    ("detect_distill", {"PLATFORM": "mmdet", "MODEL": "retinanet_r18_fpn_1x_coco",
                        "TEACHER_MODEL": "retinanet_r50_fpn_1x_coco", "METHOD": "pkd_yolo"}, "METHOD"),
    ("detect_prune", {"PLATFORM": "mmdet", "MODEL": "retinanet_r18_fpn_1x_coco", "TRAIN_ON_GPU": True},
     "TRAIN_ON_GPU"),
    ("ptq_onnx", {"PLATFORM": "mmdet", "MODEL": "retinanet_r18_fpn_1x_coco"}, "PLATFORM"),
])
def test_misfitting_parameters_fail_before_work(name, params, parameter):
    with pytest.raises(ConfigError) as error:
        validate_pipeline_params(name, params)
    assert error.value.parameter == parameter


def test_nyuntam_detection_job_files_map_to_detection_pipelines():
    job = map_job({"ALGORITHM": "MMRazorPrune", "TASK": "object_detection", "INTERVAL": 5, "NORM_TYPE": "flops",
                   "TARGET_FLOP_RATIO": 0.6, "insize": 320, "DATASET_PATH": "s3://bucket/coco.zip"})
    assert job.pipeline == "detect_prune"
    assert job.params["INTERVAL"] == 5 and job.params["NORM_TYPE"] == "flops"
    assert job.params["DATASET_SOURCE"] == "coco"
    assert map_job({"ALGORITHM": "ONNXQuant", "TASK": "detection"}).pipeline == "detect_ptq_onnx"
    nncf = map_job({"ALGORITHM": "NNCF", "TASK": "object_detection", "CONFIDENCE_THRESHOLD": 0.3, "IOU": 0.6,
                    "USE_DEFAULT_POST_PROCESSING": False})
    assert nncf.pipeline == "detect_ptq_openvino"
    assert (nncf.params["SCORE_THRESHOLD"], nncf.params["IOU"], nncf.params["USE_DEFAULT_POST_PROCESSING"]) == \
        (0.3, 0.6, False)
    assert map_job({"ALGORITHM": "TensorRT", "TASK": "object_detection"}).pipeline == "detect_ptq_tensorrt"
    assert map_job({"ALGORITHM": "KDTransfer", "TASK": "object_detection", "METHOD": "cwd"}).params["METHOD"] == "cwd"


def _rows(report):
    return json.loads((report.parent / "results").read_text())


@pytest.mark.slow
def test_detect_ptq_onnx_pipeline(tmp_path):
    rows = _rows(run_local("detect_ptq_onnx", {**TINY, "per_channel": True}, tmp_path))
    assert {(r["variant"], r["backend"]) for r in rows} >= {("fp32", "torch"), ("fp32", "onnxruntime"),
                                                            ("int8", "onnxruntime")}
    assert all("mAP" in r for r in rows)


@pytest.mark.slow
def test_detect_ptq_openvino_pipeline_with_accuracy_control(tmp_path):
    rows = _rows(run_local("detect_ptq_openvino", {**TINY, "SUBSET_SIZE": 16, "MAX_ACCURACY_DROP": 1.0}, tmp_path))
    assert {(r["variant"], r["backend"]) for r in rows} == {("fp32", "torch"), ("fp32", "openvino"),
                                                            ("int8", "openvino")}


@pytest.mark.slow
def test_detect_qat_openvino_pipeline(tmp_path):
    rows = _rows(run_local("detect_qat_openvino", {**TINY, "SUBSET_SIZE": 16}, tmp_path))
    assert {r["variant"] for r in rows} == {"fp32", "qat-int8"}


@pytest.mark.slow
def test_detect_distill_pipeline(tmp_path):
    report = run_local("detect_distill", {**TINY, "TEACHER_MODEL": "fcos_resnet18_fpn", "EPOCHS": 1, "LR": 0.001,
                                          "METHOD": "cwd"}, tmp_path)
    assert {r["variant"] for r in _rows(report)} == {"fp32", "distilled"}


@pytest.mark.slow
def test_detect_prune_pipeline(tmp_path):
    report = run_local("detect_prune", {**TINY, "EPOCHS": 4, "INTERVAL": 1, "TARGET_FLOP_RATIO": 0.85}, tmp_path)
    rows = _rows(report)
    (pruned_dir,) = list(report.parent.parent.glob("prune-detection/pruned_model"))
    metrics = read_model_metadata(pruned_dir).metrics
    assert metrics["flops_after"] <= 0.85 * metrics["flops_before"]
    assert {r["variant"] for r in rows} == {"fp32", "pruned"}


def test_detect_ptq_tensorrt_places_engine_build_and_benchmark_on_gpu_nodes():
    from test_pipelines import _compiled

    spec, platform = _compiled("detect_ptq_tensorrt")
    executors = spec["deploymentSpec"]["executors"]
    on_gpu = {name for name, e in executors.items() if "accelerator" in e["container"]["resources"]}
    # besides the fine-tune step's TRAIN_ON_GPU variant (tests/test_train_placement.py), only the TensorRT steps
    assert {n for n in on_gpu if not n.startswith("exec-finetune")} == {"exec-build-tensorrt-engine",
                                                                         "exec-benchmark-gpu"}
    placed = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert all(placed[name]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"} for name in on_gpu)
    assert "exec-qdq-onnx" in executors and "exec-qdq-onnx" not in on_gpu  # calibration runs on a CPU node
