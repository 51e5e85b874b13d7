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

from visioncompress.artifacts import ModelMetadata
from visioncompress.config import (
    OnnxPTQConfig, OpenVinoPTQConfig, OpenVinoQATConfig, TensorRTConfig, TorchPTQConfig, TorchQATConfig,
    TrainConfig,
)


def quantize(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, output_dir: str | os.PathLike,
             config: TorchPTQConfig | OnnxPTQConfig | OpenVinoPTQConfig | TensorRTConfig) -> ModelMetadata:
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
    if isinstance(config, TorchQATConfig):
        from visioncompress.quantize.qat_torch import qat_torch as backend
    elif isinstance(config, OpenVinoQATConfig):
        from visioncompress.quantize.qat_openvino import qat_openvino as backend
    else:
        raise TypeError(f"no QAT backend takes a {type(config).__name__}")
    return backend(model_dir, dataset_dir, output_dir, config, train_config, checkpoint_dir=checkpoint_dir)


__all__ = ["quantize", "quantize_aware"]
