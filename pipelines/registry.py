"""Every pipeline by its short name: its function, run parameters and the checks made before a run.

The table itself is data in the library (``visioncompress.config.pipelines``): this module only adds
what needs the pipeline functions (KFP) or the stage configs.
"""

from __future__ import annotations

import difflib
import importlib

from visioncompress.config import validate_params
from visioncompress.config.pipelines import PIPELINES, pipeline_spec
from visioncompress.errors import ConfigError

__all__ = ["PIPELINES", "get_pipeline", "pipeline_parameters", "validate_pipeline_params", "check_task",
           "coerce_params", "is_detection_pipeline"]


def get_pipeline(name: str):
    module, attr = pipeline_spec(name).function.split(":")
    return getattr(importlib.import_module(module), attr)


def pipeline_parameters(name: str) -> dict:
    """The pipeline's run parameters and their defaults (no graph is built)."""
    return pipeline_spec(name).defaults_map()


def validate_pipeline_params(name: str, params: dict, *, local: bool = True) -> dict:
    """Check ``params`` (spec names) for pipeline ``name``; returns the full parameter set.

    ``local=False`` (a run submitted to a cluster): local paths are not checked for existence here, since
    they may exist only inside the pods (a mounted volume); the stage checks them there.
    """
    spec = pipeline_spec(name)
    defaults = spec.defaults_map()
    for key, value in params.items():
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            raise ConfigError(key, value, f"a parameter of pipeline {name!r}"
                              + (f" (did you mean {close[0]!r}?)" if close else ""))
    merged = {**defaults, **params}
    validate_params(merged, spec.uses, accepted=defaults)
    check_task(name, merged, local=local)
    return merged


def is_detection_pipeline(name: str) -> bool:
    return name.startswith("detect_")


def check_task(name: str, params: dict, *, local: bool = True) -> None:
    """Parameters that are valid alone but do not fit the pipeline's task or model family."""
    from visioncompress.config.data import DETECTION_SOURCES
    from visioncompress.detection.zoo import detection_model_names, require_detector
    from visioncompress.models.io import check_checkpoint_path
    from visioncompress.storage.s3 import is_remote

    detection = is_detection_pipeline(name)
    source = params.get("DATASET_SOURCE")
    if source is not None and (source in DETECTION_SOURCES) != detection:
        raise ConfigError("DATASET_SOURCE", source, f"a {'detection' if detection else 'classification'} source for "
                          f"pipeline {name!r}: " + (", ".join(DETECTION_SOURCES) if detection
                                                    else "fashion-mnist, folder, torchvision"))
    for key, platform_key in (("MODEL", "PLATFORM"), ("TEACHER_MODEL", "TEACHER_PLATFORM")):
        if detection and str(params.get(platform_key) or "torchvision").lower() != "torchvision":
            raise ConfigError(platform_key, params[platform_key], f"torchvision for the detection pipeline {name!r} "
                              "(its detectors are torchvision's)")
    for key, path_key, platform_key in (("MODEL", "CUSTOM_MODEL_PATH", "PLATFORM"),
                                        ("TEACHER_MODEL", "CUSTOM_TEACHER_PATH", "TEACHER_PLATFORM")):
        model = params.get(key)
        platform = str(params.get(platform_key) or params.get("PLATFORM") or "").lower()
        if model is None or params.get(path_key) or platform == "timm":
            continue
        if (model in detection_model_names()) != detection:
            raise ConfigError(key, model, f"a {'detection' if detection else 'classification'} model for pipeline "
                              f"{name!r}" + (": " + ", ".join(detection_model_names()) if detection else ""))
    # What a detection stage needs of MODEL's architecture; the stage checks the built model the same way.
    # (PTQ exports every zoo detector end to end, Faster R-CNN too; only OpenVINO QAT needs a one-stage one.)
    need = {"detect_qat_openvino": ("one-stage", "OpenVINO QAT"),
            "detect_prune": ("fpn", "GroupFisher pruning")}.get(name)
    if need and params.get("MODEL") in detection_model_names():
        require_detector(params["MODEL"], *need, pipeline=name)
    teacher_path = str(params.get("CUSTOM_TEACHER_PATH") or "")
    if teacher_path and "TEACHER_MODEL" in params and (local or is_remote(teacher_path)):
        check_checkpoint_path("CUSTOM_TEACHER_PATH", params["CUSTOM_TEACHER_PATH"])
    if detection and params.get("METHOD") == "pkd_yolo":
        raise ConfigError("METHOD", "pkd_yolo", "pkd or cwd for torchvision detectors (pkd_yolo distils a YOLO-style "
                          "neck and needs an MMYOLO model, the OpenMMLab family)")


def coerce_params(name: str, params: dict) -> dict:
    """Integers given for float parameters become floats (KFP checks types strictly)."""
    types = {p.name: p.type for p in pipeline_spec(name).parameters()}
    return {k: float(v) if types.get(k) is float and isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in params.items()}
