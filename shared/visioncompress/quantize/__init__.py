"""Post-training quantization: one public function that dispatches on the config's backend.

    quantize(model_dir, dataset_dir, output_dir, TorchPTQConfig(...))     -> TorchScript INT8
    quantize(model_dir, dataset_dir, output_dir, OnnxPTQConfig(...))      -> .onnx QDQ/QOperator
    quantize(model_dir, dataset_dir, output_dir, OpenVinoPTQConfig(...))  -> .xml/.bin INT8
    quantize(model_dir, dataset_dir, output_dir, TensorRTConfig(...))     -> QDQ .onnx for TensorRT

A detector (model task "detection") is quantized end to end: one graph from image batch to detections, its
post-processing (``post``: DetectionPostConfig) left in floating point (``visioncompress.detection.export``).

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
             config: TorchPTQConfig | OnnxPTQConfig | OpenVinoPTQConfig | TensorRTConfig, *,
             post=None) -> ModelMetadata:
    """``post``: a detector's DetectionPostConfig (the post-processing baked into its end-to-end graph)."""
    if _is_detection(model_dir):
        return _quantize_detector(model_dir, dataset_dir, output_dir, config, post)
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
                   checkpoint_dir: str | os.PathLike | None = None, post=None, teacher=None,
                   distill_config=None) -> ModelMetadata:
    """``teacher`` (a torch classifier, with ``distill_config``'s LAMBDA and TEMPERATURE): QAT distilled from it."""
    if _is_detection(model_dir) and isinstance(config, OpenVinoQATConfig):
        from visioncompress.detection.qat_openvino import qat_openvino_detector

        return qat_openvino_detector(model_dir, dataset_dir, output_dir, config, train_config,
                                     checkpoint_dir=checkpoint_dir, post=post)
    elif _is_detection(model_dir):
        raise ConfigError("ALGORITHM", type(config).__name__, "OpenVINO QAT (OpenVinoQATConfig) for detection models")
    elif isinstance(config, TorchQATConfig):
        from visioncompress.quantize.qat_torch import qat_torch as backend
    elif isinstance(config, OpenVinoQATConfig):
        from visioncompress.quantize.qat_openvino import qat_openvino as backend
    else:
        raise TypeError(f"no QAT backend takes a {type(config).__name__}")
    return backend(model_dir, dataset_dir, output_dir, config, train_config, checkpoint_dir=checkpoint_dir,
                   teacher=teacher, distill_config=distill_config)


def _is_detection(model_dir) -> bool:
    return read_model_metadata(model_dir).task == "detection"


def _quantize_detector(model_dir, dataset_dir, output_dir, config, post) -> ModelMetadata:
    """Detectors are quantized end to end (image batch -> detections, post-processing left in FP)."""
    if isinstance(config, OnnxPTQConfig):
        from visioncompress.detection.onnx_ptq import quantize_detector_onnx as backend
    elif isinstance(config, OpenVinoPTQConfig):
        from visioncompress.detection.openvino_ptq import quantize_detector_openvino as backend
    elif isinstance(config, TensorRTConfig):
        from visioncompress.detection.tensorrt import make_detector_qdq_onnx as backend
    else:
        raise ConfigError("ALGORITHM", type(config).__name__, "ONNX Runtime, OpenVINO (NNCF) or TensorRT PTQ for "
                          "detection models (PyTorch PTQ is for classifiers)")
    return backend(model_dir, dataset_dir, output_dir, config, post)


__all__ = ["quantize", "quantize_aware"]
