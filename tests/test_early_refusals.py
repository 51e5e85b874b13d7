"""What the parameters and the model name already say is refused before any step runs, naming the parameter.

Each detection stage checks the built model (``heads.require_one_stage`` for OpenVINO QAT,
``group_fisher._fpn`` for pruning); the pre-run check reads the same facts from the name, and
``detector_traits`` is checked here against every built detector so the two cannot drift apart.
"""

from __future__ import annotations

import pytest
import torch

from visioncompress.cli import main
from visioncompress.detection.zoo import build_detector, detection_model_names, detector_traits
from visioncompress.errors import ArtifactError, ConfigError


def test_detector_traits_match_the_built_models():
    from visioncompress.detection.heads import family

    for name in detection_model_names():
        model = build_detector(name, 2, 64, [0.5] * 3, [0.25] * 3)
        assert detector_traits(name) == {"family": family(model),
                                         "fpn": getattr(model.backbone, "fpn", None) is not None}, name


@pytest.mark.parametrize("pipeline, model, expected", [
    ("detect_qat_openvino", "fasterrcnn_resnet50_fpn", "a one-stage detector for OpenVINO QAT"),
    ("detect_prune", "ssdlite320_mobilenet_v3_large", "a detector with an FPN backbone for GroupFisher pruning"),
])
def test_detection_model_that_a_stage_cannot_take_is_refused_before_any_work(capsys, tmp_path, pipeline, model,
                                                                             expected):
    root = tmp_path / "runs"
    code = main(["run", pipeline, "--local", "--root", str(root), "-p", f"MODEL={model}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not root.exists(), "refused before the run folder (or any step) exists"
    assert err.startswith(f"visioncompress: MODEL='{model}' is not allowed; expected {expected}") and "\n" not in err


def test_models_the_stages_take_pass_the_pre_run_checks():
    from visioncompress.pipelines.registry import validate_pipeline_params

    validate_pipeline_params("detect_ptq_onnx", {"MODEL": "ssdlite320_mobilenet_v3_large"})  # one-stage, no FPN
    validate_pipeline_params("detect_prune", {"MODEL": "fasterrcnn_mobilenet_v3_large_320_fpn"})  # two-stage, FPN
    for pipeline in ("detect_ptq_onnx", "detect_ptq_openvino", "detect_ptq_tensorrt"):  # exported end to end
        validate_pipeline_params(pipeline, {"MODEL": "fasterrcnn_mobilenet_v3_large_320_fpn"})
    validate_pipeline_params("detect_distill", {"TEACHER_MODEL": "fasterrcnn_resnet50_fpn"})  # distillation takes both


@pytest.mark.parametrize("value, expected", [
    ("{missing}", "an existing .pt/.pth file or model artifact folder"),
    ("s3://Bad_Bucket/teacher.pt", "a URI whose bucket name"),
    ("http://example.com/teacher.pt", "an existing .pt/.pth file or model artifact folder, or an s3://"),
])
@pytest.mark.parametrize("pipeline", ["detect_distill", "distill"])
def test_bad_custom_teacher_path_is_refused_before_any_work(capsys, tmp_path, pipeline, value, expected):
    value = value.format(missing=tmp_path / "no-such-teacher.pt")
    root = tmp_path / "runs"
    code = main(["run", pipeline, "--local", "--root", str(root), "-p", f"CUSTOM_TEACHER_PATH={value}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not root.exists()
    assert err.startswith(f"visioncompress: CUSTOM_TEACHER_PATH='{value}' is not allowed; expected {expected}")


def test_detection_distillation_names_the_teacher_path_in_its_own_errors(detection_dataset_dir, tmp_path):
    """A teacher file that does not load, or does not fit TEACHER_MODEL: the stage names CUSTOM_TEACHER_PATH."""
    from visioncompress.config import DistillConfig, ModelConfig, TrainConfig
    from visioncompress.detection.distill import distill_detector

    garbage = tmp_path / "teacher.pt"
    garbage.write_bytes(b"not a checkpoint")
    other = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), other)
    for path, pattern in ((garbage, "(could not be loaded|it was not loaded)"),
                          (other, "does not fit TEACHER_MODEL.s architecture")):
        with pytest.raises(ArtifactError, match=f"CUSTOM_TEACHER_PATH='{path}'.*{pattern}") as info:
            distill_detector(detection_dataset_dir, tmp_path / "out", ModelConfig(model="fcos_resnet18_fpn"),
                             TrainConfig(batch_size=4, finetune_epochs=0),
                             DistillConfig(teacher_model="fcos_resnet34_fpn", custom_teacher_path=str(path),
                                           epochs=1))
        assert "CUSTOM_MODEL_PATH" not in str(info.value)
    with pytest.raises(ConfigError) as missing:
        distill_detector(detection_dataset_dir, tmp_path / "out", ModelConfig(model="fcos_resnet18_fpn"),
                         TrainConfig(batch_size=4, finetune_epochs=0),
                         DistillConfig(teacher_model="fcos_resnet34_fpn",
                                       custom_teacher_path=str(tmp_path / "gone.pt"), epochs=1))
    assert missing.value.parameter == "CUSTOM_TEACHER_PATH" and missing.value.value == str(tmp_path / "gone.pt")
    assert not (tmp_path / "out").exists()


def test_a_path_that_exists_only_in_the_pods_is_not_refused_at_submission():
    from visioncompress.errors import ConfigError
    from visioncompress.pipelines.registry import validate_pipeline_params

    pod_path = {"CUSTOM_TEACHER_PATH": "/mnt/models/teacher.pt"}  # a volume mounted in the cluster's pods
    validate_pipeline_params("distill", pod_path, local=False)
    with pytest.raises(ConfigError, match="CUSTOM_TEACHER_PATH"):
        validate_pipeline_params("distill", pod_path)  # a local run: the file must be here
    with pytest.raises(ConfigError, match="CUSTOM_TEACHER_PATH"):
        validate_pipeline_params("distill", {"CUSTOM_TEACHER_PATH": "s3://"}, local=False)
