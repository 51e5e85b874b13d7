"""Post-training quantization: one public function that dispatches on the config's backend.

    quantize(model_dir, dataset_dir, output_dir, TorchPTQConfig(...))     -> TorchScript INT8
    quantize(model_dir, dataset_dir, output_dir, OnnxPTQConfig(...))      -> .onnx QDQ/QOperator
    quantize(model_dir, dataset_dir, output_dir, OpenVinoPTQConfig(...))  -> .xml/.bin INT8
    quantize(model_dir, dataset_dir, output_dir, TensorRTConfig(...))     -> QDQ .onnx for TensorRT

Quantization-aware training dispatches the same way:

    quantize_aware(model_dir, dataset_dir, output_dir, TorchQATConfig(...), TrainConfig(...))
    quantize_aware(model_dir, dataset_dir, output_dir, OpenVinoQATConfig(...), TrainConfig(...))
"""

from __future__ import annotations

import os

from visioncompress.artifacts import ModelMetadata, read_model_metadata
from visioncompress.config import (
    OnnxPTQConfig, OpenVinoPTQConfig, OpenVinoQATConfig, TensorRTConfig, TorchPTQConfig, TorchQATConfig,
    TrainConfig,
)
from visioncompress.errors import ConfigError


def quantize(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, output_dir: str | os.PathLike,
             config: TorchPTQConfig | OnnxPTQConfig | OpenVinoPTQConfig | TensorRTConfig) -> ModelMetadata:
    if _is_detection(model_dir):
        return _quantize_detector(model_dir, dataset_dir, output_dir, config)
    if isinstance(config, TorchPTQConfig):
        from visioncompress.quantize.torch import quantize_torch as backend
    elif isinstance(config, OnnxPTQConfig):
        from visioncompress.quantize.onnx import quantize_onnx as backend
    elif isinstance(config, OpenVinoPTQConfig):
        from visioncompress.quantize.openvino import quantize_openvino as backend
    elif isinstance(config, TensorRTConfig):
        # CPU half (calibrated symmetric QDQ ONNX); the engine is built on a GPU node by quantize.tensorrt.build_engine.
        from visioncompress.quantize.tensorrt import make_qdq_onnx as backend
    else:
        raise TypeError(f"no quantization backend takes a {type(config).__name__}")
    return backend(model_dir, dataset_dir, output_dir, config)


def quantize_aware(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, output_dir: str | os.PathLike,
                   config: TorchQATConfig | OpenVinoQATConfig, train_config: TrainConfig, *,
                   checkpoint_dir: str | os.PathLike | None = None) -> ModelMetadata:
    if _is_detection(model_dir) and isinstance(config, OpenVinoQATConfig):
        from visioncompress.detection.qat_openvino import qat_openvino_detector as backend
    elif _is_detection(model_dir):
        raise ConfigError("ALGORITHM", type(config).__name__, "OpenVINO QAT (OpenVinoQATConfig) for detection models")
    elif isinstance(config, TorchQATConfig):
        from visioncompress.quantize.qat_torch import qat_torch as backend
    elif isinstance(config, OpenVinoQATConfig):
        from visioncompress.quantize.qat_openvino import qat_openvino as backend
    else:
        raise TypeError(f"no QAT backend takes a {type(config).__name__}")
    return backend(model_dir, dataset_dir, output_dir, config, train_config, checkpoint_dir=checkpoint_dir)


def _is_detection(model_dir) -> bool:
    return read_model_metadata(model_dir).task == "detection"


def _quantize_detector(model_dir, dataset_dir, output_dir, config) -> ModelMetadata:
    if not isinstance(config, OnnxPTQConfig):
        raise ConfigError("ALGORITHM", type(config).__name__, "ONNX Runtime PTQ (OnnxPTQConfig) for detection models; "
                          "OpenVINO INT8 for detectors comes from QAT (quantize_aware with OpenVinoQATConfig)")
    from visioncompress.detection.onnx_ptq import quantize_detector_onnx

    return quantize_detector_onnx(model_dir, dataset_dir, output_dir, config)


__all__ = ["quantize", "quantize_aware"]
