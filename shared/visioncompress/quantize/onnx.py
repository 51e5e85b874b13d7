"""ONNX export and ONNX Runtime static INT8 quantization."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from visioncompress.artifacts import ModelMetadata, staged_output, write_model_metadata
from visioncompress.config import OnnxPTQConfig
from visioncompress.log import get_logger
from visioncompress.quantize._common import calibration_arrays, derived_metadata, load_inputs

log = get_logger("quantize.onnx")

INPUT_NAME, OUTPUT_NAME = "input", "logits"
OPSET = 17


def export_onnx(model, example, path: str | os.PathLike) -> Path:
    """Write ``model`` as a single-file ONNX graph with a dynamic batch axis."""
    import warnings

    import torch

    path = Path(path)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        # The TorchScript exporter (dynamo=False) handles every torchvision classifier and detector;
        # the dynamo exporter fails on detectors, so one exporter serves both tasks.
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    return path


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over our calibration split."""

    def __init__(self, batches):
        self._batches = iter(batches)

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}

    def rewind(self):  # pragma: no cover - only used by some calibrators
        pass


def _quantize_static(fp32_path: Path, int8_path: Path, calibration, config: OnnxPTQConfig, *,
                     exclude=None) -> list[str]:
    """``exclude(prepared_path) -> node names`` that stay in floating point (a detector's post-processing);
    returns those names."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = fp32_path.with_name("prepared.onnx")
    quant_pre_process(str(fp32_path), str(prepared))
    reader = _CalibrationReader(calibration)
    excluded = list(exclude(prepared)) if exclude else []
    extra = {}
    if config.activation_type in {"QInt16", "QUInt16"} or config.weight_type in {"QInt16", "QUInt16"}:
        extra["UseQDQContribOps"] = True  # 16-bit Q/DQ needs the com.microsoft domain below opset 21
    quantize_static(
        str(prepared), str(int8_path), reader,
        quant_format=getattr(QuantFormat, config.quant_format),
        per_channel=config.per_channel,
        activation_type=getattr(QuantType, config.activation_type),
        weight_type=getattr(QuantType, config.weight_type),
        calibrate_method=getattr(CalibrationMethod, config.calibrate_method),
        nodes_to_exclude=excluded,
        extra_options=extra,
    )
    return excluded


def quantize_onnx(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, output_dir: str | os.PathLike,
                  config: OnnxPTQConfig) -> ModelMetadata:
    import onnx
    import torch

    model, parent, dataset = load_inputs(model_dir, dataset_dir)
    example = torch.from_numpy(dataset.example_input(1))
    calibration = calibration_arrays(dataset, config.batch_size)
    log.info("ONNX PTQ format=%s activations=%s weights=%s per_channel=%s on %d calibration batches",
             config.quant_format, config.activation_type, config.weight_type, config.per_channel, len(calibration))
    metadata = derived_metadata(parent, model_dir, stage="quantize_onnx",
                                precision=_precision(config), config=config, fmt="onnx")
    with tempfile.TemporaryDirectory() as tmp, staged_output(output_dir) as scratch:
        fp32 = export_onnx(model, example, Path(tmp) / "fp32.onnx")
        target = scratch / metadata.file_name
        _quantize_static(fp32, target, calibration, config)
        onnx.checker.check_model(str(target))
        write_model_metadata(scratch, metadata)
    log.info("INT8 ONNX model written to %s (load with %s)", output_dir, metadata.load_call)
    return metadata


def _precision(config: OnnxPTQConfig) -> str:
    if {config.activation_type, config.weight_type} <= {"QInt8", "QUInt8"}:
        return "int8"
    bits = {"QInt8": "int8", "QUInt8": "uint8", "QInt16": "int16", "QUInt16": "uint16", "QFLOAT8E4M3FN": "fp8"}
    return f"{bits[config.activation_type]}/{bits[config.weight_type]}"
