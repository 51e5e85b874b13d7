"""Every pipeline by its short name, with the stage configs its parameters feed."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass

from visioncompress.config import (
    BenchmarkConfig, DataConfig, DistillConfig, GroupFisherConfig, ModelConfig, OnnxPTQConfig, OpenVinoPTQConfig, OpenVinoQATConfig,
    PruneConfig, PublishConfig, TensorRTConfig, TorchPTQConfig, TorchQATConfig, TrainConfig, validate_params,
)
from visioncompress.errors import ConfigError

_COMMON = (DataConfig, ModelConfig, TrainConfig, PublishConfig)


@dataclass(frozen=True)
class PipelineEntry:
    target: str  # "module:function"
    configs: tuple[type, ...]


PIPELINES = {
    "compare": PipelineEntry("pipelines.compare:compare",
                             _COMMON + (TorchPTQConfig, OnnxPTQConfig, OpenVinoPTQConfig)),
    "compare_all": PipelineEntry("pipelines.compare_all:compare_all",
                                 _COMMON + (TorchPTQConfig, OnnxPTQConfig, OpenVinoPTQConfig, TorchQATConfig,
                                            OpenVinoQATConfig, DistillConfig, PruneConfig, TensorRTConfig)),
    "distill": PipelineEntry("pipelines.distill:distill", _COMMON + (DistillConfig,)),
    "prune": PipelineEntry("pipelines.prune:prune", _COMMON + (PruneConfig,)),
    "qat_torch": PipelineEntry("pipelines.qat_torch:qat_torch", _COMMON + (TorchQATConfig,)),
    "qat_openvino": PipelineEntry("pipelines.qat_openvino:qat_openvino", _COMMON + (OpenVinoQATConfig,)),
    "ptq_tensorrt": PipelineEntry("pipelines.ptq_tensorrt:ptq_tensorrt", _COMMON + (TensorRTConfig,)),
    "ptq_torch": PipelineEntry("pipelines.ptq_torch:ptq_torch", _COMMON + (TorchPTQConfig,)),
    "ptq_onnx": PipelineEntry("pipelines.ptq_onnx:ptq_onnx", _COMMON + (OnnxPTQConfig,)),
    "ptq_openvino": PipelineEntry("pipelines.ptq_openvino:ptq_openvino", _COMMON + (OpenVinoPTQConfig,)),
    "detect_ptq_onnx": PipelineEntry("pipelines.detect_ptq_onnx:detect_ptq_onnx", _COMMON + (OnnxPTQConfig,)),
    "detect_qat_openvino": PipelineEntry("pipelines.detect_qat_openvino:detect_qat_openvino",
                                         _COMMON + (OpenVinoQATConfig,)),
    "detect_distill": PipelineEntry("pipelines.detect_distill:detect_distill", _COMMON + (DistillConfig,)),
    "detect_prune": PipelineEntry("pipelines.detect_prune:detect_prune", _COMMON + (GroupFisherConfig,)),
}


def get_pipeline(name: str):
    if name not in PIPELINES:
        raise ConfigError("pipeline", name, sorted(PIPELINES))
    module, attr = PIPELINES[name].target.split(":")
    return getattr(importlib.import_module(module), attr)


def pipeline_parameters(name: str) -> dict:
    """The pipeline's run parameters and their defaults."""
    func = get_pipeline(name).pipeline_func
    return {p.name: p.default for p in inspect.signature(func).parameters.values()}


def validate_pipeline_params(name: str, params: dict) -> dict:
    """Check ``params`` (spec names) for pipeline ``name``; returns the full parameter set."""
    defaults = pipeline_parameters(name)
    for key, value in params.items():
        if key not in defaults:
            import difflib

            close = difflib.get_close_matches(key, list(defaults), n=1)
            raise ConfigError(key, value, f"a parameter of pipeline {name!r}"
                              + (f" (did you mean {close[0]!r}?)" if close else ""))
    merged = {**defaults, **params}
    validate_params(merged, PIPELINES[name].configs + (BenchmarkConfig,), accepted=defaults)
    check_task(name, merged)
    return merged


def is_detection_pipeline(name: str) -> bool:
    return name.startswith("detect_")


def check_task(name: str, params: dict) -> None:
    """Parameters that are valid alone but do not fit the pipeline's task or model family."""
    from visioncompress.config.data import DETECTION_SOURCES
    from visioncompress.detection.zoo import detection_model_names, require_detector
    from visioncompress.models.io import check_checkpoint_path

    detection = is_detection_pipeline(name)
    source = params.get("DATASET_SOURCE")
    if source is not None and (source in DETECTION_SOURCES) != detection:
        raise ConfigError("DATASET_SOURCE", source, f"a {'detection' if detection else 'classification'} source for "
                          f"pipeline {name!r}: " + (", ".join(DETECTION_SOURCES) if detection
                                                    else "fashion-mnist, folder, torchvision"))
    for key, path_key in (("MODEL", "CUSTOM_MODEL_PATH"), ("TEACHER_MODEL", "CUSTOM_TEACHER_PATH")):
        model = params.get(key)
        if model is None or params.get(path_key):
            continue
        if (model in detection_model_names()) != detection:
            raise ConfigError(key, model, f"a {'detection' if detection else 'classification'} model for pipeline "
                              f"{name!r}" + (": " + ", ".join(detection_model_names()) if detection else ""))
    # What a detection stage needs of MODEL's architecture; the stage checks the built model the same way.
    need = {"detect_ptq_onnx": ("one-stage", "ONNX PTQ"), "detect_qat_openvino": ("one-stage", "OpenVINO QAT"),
            "detect_prune": ("fpn", "GroupFisher pruning")}.get(name)
    if need and params.get("MODEL") in detection_model_names():
        require_detector(params["MODEL"], *need, pipeline=name)
    if params.get("CUSTOM_TEACHER_PATH") and "TEACHER_MODEL" in params:
        check_checkpoint_path("CUSTOM_TEACHER_PATH", params["CUSTOM_TEACHER_PATH"])
    if detection and params.get("METHOD") == "pkd_yolo":
        raise ConfigError("METHOD", "pkd_yolo", "pkd or cwd for torchvision detectors (pkd_yolo distils a YOLO-style "
                          "neck and needs an MMYOLO model, the OpenMMLab family)")


def coerce_params(name: str, params: dict) -> dict:
    """Integers given for float parameters become floats (KFP checks types strictly)."""
    func = get_pipeline(name).pipeline_func
    annotations = {p.name: p.annotation for p in inspect.signature(func).parameters.values()}
    return {k: float(v) if annotations.get(k) is float and isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in params.items()}
