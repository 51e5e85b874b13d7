"""TensorRTQAT: quantization-aware training in TensorRT's INT8 form, exported as a QDQ ONNX model.

The CPU half of nyuntam's TensorRTQAT. The FP32 model is prepared with torch's FX QAT and its TensorRT
backend configuration: symmetric INT8 activations (zero point 0), per-channel symmetric INT8 weights and
float biases, which is the explicit-quantization form TensorRT builds INT8 layers from. It trains with the
shared loop (QAT_EPOCHS at QAT_LEARNING_RATE, the fine-tune's optimizer, criterion, validation and seed),
then the fake-quantized graph is exported with torch's ONNX exporter, which writes every fake quantizer as a
QuantizeLinear/DequantizeLinear pair holding the learned scales. That model is what the TensorRT PTQ's
calibration step writes too, so the same GPU step (``quantize.tensorrt.build_engine``) turns it into an
engine; onnxruntime's CPU provider runs it as well (the accuracy of the QAT model, GPU or not).
"""

from __future__ import annotations

import copy
import os

from visioncompress.artifacts import ModelMetadata, staged_output, write_model_metadata
from visioncompress.config import TrainConfig
from visioncompress.config.qat import TensorRTQATConfig
from visioncompress.log import get_logger
from visioncompress.quantize._common import derived_metadata, load_inputs
from visioncompress.quantize.onnx import export_onnx
from visioncompress.quantize.qat_torch import qat_metrics, qat_params, qat_train_config
from visioncompress.train.engine import ClassificationTask, fit

log = get_logger("quantize.qat_tensorrt")

STAGE = "qat_qdq_onnx"
INT8_RANGE = (-128, 127)  # the range torch's ONNX exporter writes as INT8 Q/DQ (zero point 0: symmetric)


def tensorrt_qconfig():
    """Symmetric INT8 fake quantization: per-tensor activations, per-channel (output axis) weights."""
    import torch
    from torch.ao.quantization import (
        FakeQuantize, MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver, QConfig,
    )

    low, high = INT8_RANGE
    activation = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=low, quant_max=high,
                                        dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    weight = FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, quant_min=low, quant_max=high,
                                    dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0)
    return QConfig(activation=activation, weight=weight)


def prepare_tensorrt_qat(model, example):
    """A training-mode copy of ``model`` with TensorRT-form fake quantization (torch's TensorRT backend config)."""
    from torch.ao.quantization import QConfigMapping
    from torch.ao.quantization.backend_config import get_tensorrt_backend_config
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    return prepare_qat_fx(copy.deepcopy(model).train(), QConfigMapping().set_global(tensorrt_qconfig()),
                          (example,), backend_config=get_tensorrt_backend_config())


def _exportable(graph_module):
    """``graph_module`` inside a plain module: the TorchScript ONNX exporter reads ``.graph`` as its own."""
    import torch

    class Exportable(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    return Exportable(graph_module)


def qat_qdq_onnx(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, output_dir: str | os.PathLike,
                 config: TensorRTQATConfig, train_config: TrainConfig, *,
                 checkpoint_dir: str | os.PathLike | None = None) -> ModelMetadata:
    """FP32 model -> QAT in TensorRT's INT8 form -> QDQ ONNX model (the input of the TensorRT engine build)."""
    import onnx
    import torch
    from torch.ao.quantization import disable_observer

    model, parent, dataset = load_inputs(model_dir, dataset_dir)
    example = torch.from_numpy(dataset.example_input(1))
    prepared = prepare_tensorrt_qat(model, example)
    log.info("TensorRT QAT (symmetric INT8, per-channel weights): %d epoch(s) at learning rate %g, batch %d",
             config.qat_epochs, config.qat_learning_rate, config.batch_size)
    qat_config = qat_train_config(train_config, config)
    result = fit(prepared, ClassificationTask(dataset, qat_config.criterion), qat_config, epochs=config.qat_epochs,
                 learning_rate=config.qat_learning_rate, checkpoint_dir=checkpoint_dir, name=STAGE)
    prepared.eval()
    prepared.apply(disable_observer)  # the learned ranges are final; an observer update does not export
    metadata = derived_metadata(parent, model_dir, stage=STAGE, precision="int8", config=config, fmt="onnx")
    metadata = metadata.derive(params={**qat_params(train_config, config), "quant_format": "QDQ",
                                       "activation_type": "QInt8 (symmetric)",
                                       "weight_type": "QInt8 (symmetric, per-channel)"},
                               metrics=qat_metrics(result))
    with staged_output(output_dir) as scratch:
        target = export_onnx(_exportable(prepared), example, scratch / metadata.file_name)
        onnx.checker.check_model(str(target))
        graph = onnx.load(str(target)).graph
        metadata.metrics["quantize_linear_nodes"] = sum(n.op_type == "QuantizeLinear" for n in graph.node)
        write_model_metadata(scratch, metadata)
    log.info("QAT QDQ ONNX model written to %s (%d Q/DQ pairs, val top-1 %s; load with %s)", output_dir,
             metadata.metrics["quantize_linear_nodes"], result.best_val_top1, metadata.load_call)
    return metadata


__all__ = ["prepare_tensorrt_qat", "qat_qdq_onnx", "tensorrt_qconfig"]
