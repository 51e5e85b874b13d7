"""Every pipeline by its short name, with the stage configs its parameters feed."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass

from visioncompress.config import (
    BenchmarkConfig, DataConfig, DistillConfig, ModelConfig, OnnxPTQConfig, OpenVinoPTQConfig, OpenVinoQATConfig,
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
    return merged


def coerce_params(name: str, params: dict) -> dict:
    """Integers given for float parameters become floats (KFP checks types strictly)."""
    func = get_pipeline(name).pipeline_func
    annotations = {p.name: p.annotation for p in inspect.signature(func).parameters.values()}
    return {k: float(v) if annotations.get(k) is float and isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in params.items()}
