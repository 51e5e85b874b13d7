"""Each training-based pipeline runs end to end through kfp.local (tiny data, few steps)."""

import json

import pytest

from visioncompress.pipelines.local import run_local
from visioncompress.artifacts import read_model_metadata

TINY = {"insize": 16, "MAX_TRAIN_SAMPLES": 400, "MAX_TEST_SAMPLES": 200, "CALIBRATION_SAMPLES": 64,
        "BATCH_SIZE": 32, "MODEL": "mobilenet_v3_small"}


def _rows(report):
    return json.loads((report.parent / "results").read_text())


@pytest.mark.slow
def test_distill_pipeline(tmp_path):
    report = run_local("distill", {**TINY, "TEACHER_MODEL": "resnet18", "EPOCHS": 1, "TEMPERATURE": 4}, tmp_path)
    variants = {r["variant"] for r in _rows(report)}
    assert {"fp32", "fp32-eager", "distilled"} <= variants <= {"fp32", "fp32-eager", "bf16", "distilled"}
    (student,) = [p for p in report.parent.parent.glob("distill/distilled_model")]
    assert read_model_metadata(student).stage == "distill"


@pytest.mark.slow
def test_prune_pipeline(tmp_path):
    report = run_local("prune", {**TINY, "MODEL": "resnet18", "TARGET_PRUNE_RATE": 0.5}, tmp_path)
    rows = _rows(report)
    fp32 = next(r for r in rows if r["variant"] == "fp32" and r["batch_size"] == 1)
    pruned = next(r for r in rows if r["variant"] == "pruned" and r["batch_size"] == 1)
    assert pruned["size_mb"] < 0.6 * fp32["size_mb"]


@pytest.mark.slow
def test_compare_all_pipeline(tmp_path):
    report = run_local("compare_all", {**TINY, "MODEL": "resnet18", "EPOCHS": 1, "TEMPERATURE": 4,
                                       "TRANSFORMER": False}, tmp_path)
    rows = _rows(report)
    assert {(r["variant"], r["backend"]) for r in rows} >= {
        ("int8", "torch"), ("int8", "onnxruntime"), ("int8", "openvino"), ("qat-int8", "torch"),
        ("qat-int8", "openvino"), ("distilled", "torch"), ("pruned", "torch")}
    text = report.read_text()
    assert "| qat-int8 | openvino |" in text and "| pruned | torch |" in text


@pytest.mark.slow
def test_prune_quantize_pipeline(tmp_path):
    """Prune -> fine-tune -> INT8 on every CPU backend; the pruned model measured in every runtime too."""
    report = run_local("prune_quantize", {**TINY, "insize": 32, "MODEL": "resnet18", "TARGET_PRUNE_RATE": 0.5,
                                          "TRANSFORMER": False, "SUBSET_SIZE": 64, "LATENCY_BATCH_SIZES": [],
                                          "WARMUP": 1, "ITERATIONS": 3}, tmp_path)
    rows = _rows(report)
    pairs = {(r["variant"], r["backend"]) for r in rows}
    runtimes = ("torch", "onnxruntime", "openvino")
    assert {(v, b) for v in ("fp32", "pruned", "pruned-int8") for b in runtimes} <= pairs
    fp32 = {r["backend"]: r for r in rows if r["variant"] == "fp32" and r["batch_size"] == 1}
    for row in rows:
        assert row["insize"] == 32 and row["architecture"] == "resnet18"
        if row["variant"] in ("pruned", "pruned-int8"):
            assert row["size_mb"] < 0.6 * fp32[row["backend"]]["size_mb"]
    onnx_int8 = next(r for r in rows if (r["variant"], r["backend"]) == ("pruned-int8", "onnxruntime"))
    assert onnx_int8["int8_form"] in ("U8S8 QDQ", "S8S8 QDQ")  # the pipeline's preset: auto
    text = report.read_text()
    assert "Pareto front" in text and "data:image/png;base64," in text and "INT8 form" in text


# timm through the pipelines as a user runs them (issue 12): PLATFORM=timm, a DeiT-tiny from random weights at
# 32 px (2 x 2 patches), no fine-tuning.
TIMM = {**TINY, "insize": 32, "PLATFORM": "timm", "MODEL": "deit_tiny_patch16_224", "TRAINING": False}


@pytest.mark.slow
def test_timm_vit_onnx_ptq_pipeline(tmp_path):
    report = run_local("ptq_onnx", TIMM, tmp_path)
    rows = _rows(report)
    int8 = next(r for r in rows if r["variant"].startswith("int8") and r["backend"] == "onnxruntime")
    fp32 = next(r for r in rows if r["variant"] == "fp32" and r["backend"] == "torch")
    assert int8["size_mb"] < 0.5 * fp32["size_mb"] and 0.0 <= int8["top1"] <= 100.0


@pytest.mark.slow
def test_timm_vit_head_pruning_pipeline(tmp_path):
    report = run_local("prune", {**TIMM, "PRUNE_NUM_HEADS": True, "TARGET_PRUNE_RATE": 0.5}, tmp_path)
    rows = _rows(report)
    fp32 = next(r for r in rows if r["variant"] == "fp32" and r["batch_size"] == 1)
    pruned = next(r for r in rows if r["variant"] == "pruned" and r["batch_size"] == 1)
    assert pruned["size_mb"] < 0.8 * fp32["size_mb"]
    (model,) = report.parent.parent.glob("prune*/pruned_model")
    assert read_model_metadata(model).architecture == "deit_tiny_patch16_224"


@pytest.mark.slow
def test_timm_teacher_to_torchvision_student_distill_pipeline(tmp_path):
    report = run_local("distill", {**TINY, "MODEL": "mobilenet_v3_small", "TEACHER_MODEL": "deit_tiny_patch16_224",
                                   "TEACHER_PLATFORM": "timm", "insize": 32, "EPOCHS": 1, "TEMPERATURE": 4},
                       tmp_path)
    assert "distilled" in {r["variant"] for r in _rows(report)}
