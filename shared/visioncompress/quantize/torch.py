"""PyTorch CPU post-training quantization (FX graph mode), saved as TorchScript.

A quantized module no longer round-trips through ``torch.save`` of the whole module on
torch 2.14, so the result is TorchScript: ``torch.jit.load(path)`` gives a runnable INT8 model.
"""

from __future__ import annotations

import copy
import os

from visioncompress.artifacts import ModelMetadata
from visioncompress.config import TorchPTQConfig
from visioncompress.log import get_logger
from visioncompress.models import save_torchscript
from visioncompress.quantize._common import derived_metadata, load_inputs

log = get_logger("quantize.torch")

PRECISION = {"static": "int8", "weight": "int8-weights", "fusion": "fp32-fused"}


def calibrate_fx(model, dataset, example, config: TorchPTQConfig):
    """``model`` prepared for FX static INT8 (observers inserted) and calibrated on the calibration split."""
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    prepared = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping(config.engine), (example,))
    seen = 0
    with torch.inference_mode():
        for x, _ in dataset.torch_batches("calibration", config.batch_size):
            prepared(x)
            seen += len(x)
    log.info("calibrated on %d training images", seen)
    return prepared


def convert_int8(prepared, config: TorchPTQConfig, fp32_layers=()):
    """The INT8 model of a calibrated ``prepared`` one (left as it is); ``fp32_layers`` (module names) stay in
    floating point: their qconfig is None at conversion (the accuracy ladder's layer fallback)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx

    mapping = None
    if fp32_layers:
        mapping = get_default_qconfig_mapping(config.engine)
        for name in fp32_layers:
            mapping = mapping.set_module_name(name, None)
    return convert_fx(copy.deepcopy(prepared), qconfig_mapping=mapping)


def static_int8(model, dataset, example, config: TorchPTQConfig, fp32_layers=()):
    """FX static INT8 of ``model`` calibrated on the calibration split; ``fp32_layers`` keep floating point."""
    return convert_int8(calibrate_fx(model, dataset, example, config), config, fp32_layers)


def _weight_only(model):
    import torch

    # INT8 weights with activations quantized on the fly; torch only has kernels for these layer types.
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear, torch.nn.LSTM, torch.nn.GRU},
                                                  dtype=torch.qint8)


def _fusion(model):
    from torch.ao.quantization.quantize_fx import fuse_fx

    return fuse_fx(model)


def save_frozen(quantized, example, metadata: ModelMetadata, output_dir) -> ModelMetadata:
    """The quantized module as frozen TorchScript (``torch.jit.load`` runs it)."""
    import torch

    with torch.inference_mode():
        scripted = torch.jit.freeze(torch.jit.trace(quantized, example, check_trace=False).eval())
    return save_torchscript(scripted, metadata, output_dir)


def quantize_torch(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, output_dir: str | os.PathLike,
                   config: TorchPTQConfig) -> ModelMetadata:
    import torch

    model, parent, dataset = load_inputs(model_dir, dataset_dir)
    torch.backends.quantized.engine = config.engine
    example = torch.from_numpy(dataset.example_input(1))
    model = copy.deepcopy(model).eval()
    log.info("torch PTQ choice=%s engine=%s", config.choice, config.engine)
    if config.choice == "static":
        quantized = static_int8(model, dataset, example, config)
    elif config.choice == "weight":
        quantized = _weight_only(model)
    else:
        quantized = _fusion(model)
    metadata = derived_metadata(parent, model_dir, stage="quantize_torch", precision=PRECISION[config.choice],
                                config=config, fmt="torchscript")
    metadata = save_frozen(quantized, example, metadata, output_dir)
    log.info("TorchScript model written to %s (load with %s)", output_dir, metadata.load_call)
    return metadata
