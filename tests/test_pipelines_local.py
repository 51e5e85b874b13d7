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
    assert variants == {"fp32", "distilled"}
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
