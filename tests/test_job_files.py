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
    "classification_tensorrtqat_torchvision": "qat_tensorrt",
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
    "detection_mmrazorprune_mmyolo": "detect_prune",
    "detection_tensorrt_mmyolo": "detect_ptq_tensorrt",
    "detection_onnxquant_mmdet": "detect_ptq_onnx",
    "detection_nncf_ptq_mmyolo": "detect_ptq_openvino",
    "detection_nncfqat_mmyolo": "detect_qat_openvino",
    "classification_fxquant_ptq_timm": "ptq_torch",
    "classification_fxquant_qat_timm": "qat_torch",
    "classification_nncf_ptq_torchvision": "ptq_openvino",
    "classification_nncf_qat_torchvision": "qat_openvino",
    "classification_onnxquant_torchvision": "ptq_onnx",
    "classification_tensorrt_timm": "ptq_tensorrt",
    "classification_tensorrtqat_timm": "qat_tensorrt",
    "classification_kdtransfer_torchvision": "distill",
    "detection_nncf_ptq_mmdet": "detect_ptq_openvino",
    "detection_nncfqat_mmdet": "detect_qat_openvino",
    "detection_onnxquant_mmyolo": "detect_ptq_onnx",
    "detection_tensorrt_mmdet": "detect_ptq_tensorrt",
}
# The platforms each task takes: every pipeline a job can land on has a job file for each of them.
TASK_PLATFORMS = {"classification": ("torchvision", "timm"), "detection": ("torchvision", "mmdet", "mmyolo")}


def test_every_job_file_is_listed():
    assert {p.stem for p in NYUNTAM_JOBS.glob("*.yaml")} == set(EXPECTED)


def test_every_algorithm_has_a_job_file_on_every_platform_of_its_task():
    """ALGORITHM x TASK x PLATFORM: each pipeline the job files reach is reached on every platform of its task."""
    covered = set()
    for stem, pipeline in EXPECTED.items():
        job = (NYUNTAM_JOBS / f"{stem}.yaml").read_text()
        platform = next(line.split(":", 1)[1].strip() for line in job.splitlines() if line.startswith("PLATFORM:"))
        covered.add((pipeline, stem.split("_", 1)[0], platform))
    missing = {(pipeline, task, platform) for pipeline, task, _ in covered for platform in TASK_PLATFORMS[task]}
    assert missing <= covered, sorted(missing - covered)


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


def dry_run(stem, capsys):
    code = main(["run", "--config", str(NYUNTAM_JOBS / f"{stem}.yaml"), "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return {line[4:].split("=")[0].strip(): line.split("= ", 1)[1] for line in out.splitlines()[2:]}, err


def test_torchprune_keys_keep_nyuntams_meaning(capsys):
    """SPARSITY is the channel ratio, ITERATIVE / ITERATIVE_STEPS / MAX_DROP the early-stopping steps, EPOCHS the
    sparse training of a regularising pruner; with MetaPruner nyuntam trains no sparse epochs, and says so."""
    rows, _ = dry_run("classification_torchprune_torchvision", capsys)
    assert (rows["SPARSITY"], rows["ITERATIVE"], rows["ITERATIVE_STEPS"], rows["MAX_DROP"]) == (
        "0.3", "true", "4", "0.05")
    assert rows["SPARSITY_EPOCHS"] == "2" and rows["PRUNER_NAME"] == '"GroupNormPruner"'
    rows, err = dry_run("classification_torchprune_timm_vit", capsys)
    assert rows["PRUNER_NAME"] == '"MetaPruner"' and rows["SPARSITY_EPOCHS"] == "0"
    assert "prune.TorchPrune.EPOCHS" in err and "only with GroupNormPruner or BNSPruner" in err


def test_unsupported_torchprune_values_are_errors_not_notes(tmp_path, capsys):
    job = (NYUNTAM_JOBS / "classification_torchprune_torchvision.yaml").read_text()
    path = tmp_path / "job.yaml"
    path.write_text(job.replace("MAX_DROP: 0.05", "MAX_DROP: 5"))
    assert main(["run", "--config", str(path), "--dry-run"]) != 0
    assert "MAX_DROP=5" in capsys.readouterr().err


def test_tensorrtqat_maps_to_qat_exported_for_tensorrt_and_is_refused_for_detectors(capsys):
    from visioncompress.config.jobfile import map_job
    from visioncompress.errors import ConfigError

    rows, _ = dry_run("classification_tensorrtqat_torchvision", capsys)
    assert (rows["QAT_EPOCHS"], rows["QAT_LEARNING_RATE"], rows["insize"]) == ("2", "0.0001", "224")
    # no detector is trained with fake quantization for TensorRT here: an error, not a different algorithm
    with pytest.raises(ConfigError, match="TASK='object_detection' is not allowed; expected a task that "
                                          "ALGORITHM='TensorRTQAT' supports here: image_classification"):
        map_job({"ALGORITHM": "TensorRTQAT", "TASK": "object_detection"})
