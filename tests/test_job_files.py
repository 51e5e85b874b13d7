"""Every nyuntam_vision job file in examples/jobs/nyuntam maps to its pipeline (issue 12: job files run unchanged)."""

from __future__ import annotations

from pathlib import Path

import pytest

from visioncompress.cli import main

NYUNTAM_JOBS = Path(__file__).resolve().parents[1] / "examples" / "jobs" / "nyuntam"
# file stem -> the pipeline it must land on
EXPECTED = {
    "classification_fxquant_ptq_torchvision": "ptq_torch",
    "classification_fxquant_qat_torchvision": "qat_torch",
    "classification_nncf_ptq_timm": "ptq_openvino",
    "classification_nncf_qat_timm": "qat_openvino",
    "classification_onnxquant_timm_vit": "ptq_onnx",
    "classification_tensorrt_torchvision": "ptq_tensorrt",
    "classification_kdtransfer_timm_deit": "distill",
    "classification_kdtransfer_timm_to_torchvision": "distill",
    "classification_torchprune_torchvision": "prune",
    "classification_torchprune_timm_vit": "prune",
    "detection_nncfqat_torchvision": "detect_qat_openvino",
    "detection_nncf_ptq_torchvision": "detect_ptq_openvino",
    "detection_tensorrt_torchvision": "detect_ptq_tensorrt",
    "detection_onnxquant_torchvision": "detect_ptq_onnx",
    "detection_mmrazordistill_torchvision": "detect_distill",
    "detection_mmrazorprune_torchvision": "detect_prune",
    "detection_mmrazordistill_mmdet": "detect_distill",
    "detection_mmrazordistill_mmyolo": "detect_distill",
    "detection_mmrazorprune_mmdet": "detect_prune",
}


def test_every_job_file_is_listed():
    assert {p.stem for p in NYUNTAM_JOBS.glob("*.yaml")} == set(EXPECTED)


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_job_file_maps_without_error(stem, capsys):
    code = main(["run", "--config", str(NYUNTAM_JOBS / f"{stem}.yaml"), "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines()[0] == f"pipeline: {EXPECTED[stem]}"
    rows = {line[4:].split("=")[0].strip(): line.split("= ", 1)[1] for line in out.splitlines()[2:]}
    job = (NYUNTAM_JOBS / f"{stem}.yaml").read_text()
    if "\nPLATFORM: timm" in job:
        assert rows["PLATFORM"] == '"timm"'
    for family in ("mmdet", "mmyolo"):  # OpenMMLab detectors: the config names pass through unchanged
        if f"\nPLATFORM: {family}" in job:
            assert rows["PLATFORM"] == f'"{family}"' and rows["MODEL"].endswith('_coco"')
    if "DEVICE: 'cuda:0'" in job:  # nyuntam's GPU jobs train on the GPU pool
        assert rows["DEVICE"] == '"cuda:0"' and rows["TRAIN_ON_GPU"] == "true"
    assert "JOB_SERVICE" in err  # workspace keys are listed as having no effect, never silently dropped
