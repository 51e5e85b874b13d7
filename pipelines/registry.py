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
    from visioncompress.models.zoo import MM_PIPELINES, MM_PLATFORMS

    student_platform = str(params.get("PLATFORM") or "torchvision").lower()
    for key, platform_key in (("MODEL", "PLATFORM"), ("TEACHER_MODEL", "TEACHER_PLATFORM")):
        platform = str(params.get(platform_key) or "").lower() or (student_platform if key != "MODEL" else "")
        if platform in MM_PLATFORMS and name not in MM_PIPELINES:
            raise ConfigError(platform_key, params[platform_key], f"torchvision{'' if detection else ' or timm'} for "
                              f"pipeline {name!r} (OpenMMLab detectors run in {', '.join(MM_PIPELINES)})")
        if detection and platform not in ("", "torchvision", *MM_PLATFORMS):
            raise ConfigError(platform_key, params[platform_key], f"torchvision, mmdet or mmyolo for the detection "
                              f"pipeline {name!r}")
        if key == "TEACHER_MODEL" and "TEACHER_MODEL" in params and \
                (platform in MM_PLATFORMS) != (student_platform in MM_PLATFORMS):
            raise ConfigError(platform_key, params.get(platform_key) or platform,
                              f"{'mmdet or mmyolo' if student_platform in MM_PLATFORMS else 'torchvision'} for a "
                              f"PLATFORM={student_platform} student (MMRazor distils OpenMMLab models into each other)")
    if student_platform in MM_PLATFORMS:
        # the mm stack is in the detection image only (CPU); the Runner trains in this one process
        for key, bad in (("TRAIN_ON_GPU", params.get("TRAIN_ON_GPU") is True),
                         ("NUM_NODES", int(params.get("NUM_NODES") or 1) > 1),
                         ("NUM_PROCESSES", int(params.get("NUM_PROCESSES") or 0) > 1)):
            if bad:
                raise ConfigError(key, params[key], f"{'False' if key == 'TRAIN_ON_GPU' else 1} with "
                                  f"PLATFORM={student_platform}: OpenMMLab detectors train in one process in the "
                                  "detection image (the GPU image has no mm stack yet)")
    for key, path_key, platform_key in (("MODEL", "CUSTOM_MODEL_PATH", "PLATFORM"),
                                        ("TEACHER_MODEL", "CUSTOM_TEACHER_PATH", "TEACHER_PLATFORM")):
        model = params.get(key)
        platform = str(params.get(platform_key) or params.get("PLATFORM") or "").lower()
        if model is not None and platform in MM_PLATFORMS:
            from visioncompress.models.zoo import check_mm_model_name

            check_mm_model_name(key, model, platform)
        if model is None or params.get(path_key) or platform in ("timm", *MM_PLATFORMS):
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
    method = params.get("METHOD")
    if detection and "TEACHER_MODEL" in params and method is not None:
        if student_platform == "mmyolo" and method != "pkd_yolo":
            raise ConfigError("METHOD", method, "pkd_yolo for an MMYOLO student (PLATFORM=mmyolo)")
        if student_platform != "mmyolo" and method == "pkd_yolo":
            raise ConfigError("METHOD", "pkd_yolo", f"pkd or cwd for {student_platform} detectors (pkd_yolo distils "
                              "a YOLO-style neck and needs an MMYOLO model: PLATFORM=mmyolo)")


def coerce_params(name: str, params: dict) -> dict:
    """Integers given for float parameters become floats (KFP checks types strictly)."""
    types = {p.name: p.type for p in pipeline_spec(name).parameters()}
    return {k: float(v) if types.get(k) is float and isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in params.items()}
