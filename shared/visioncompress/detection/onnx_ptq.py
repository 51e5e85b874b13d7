"""ONNX Runtime static INT8 for detectors: the core (backbone + FPN + head) is exported and
quantized; anchor decoding and NMS stay outside the graph, in the artifact's decoder."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch

from visioncompress.artifacts import ModelMetadata, staged_output, write_model_metadata
from visioncompress.config import OnnxPTQConfig, to_spec
from visioncompress.detection.artifacts import calibration_images, core_metadata, load_detection_inputs, \
    save_decoder
from visioncompress.detection.heads import OUTPUT_NAMES, DetectorCore, require_one_stage
from visioncompress.log import get_logger
from visioncompress.quantize.onnx import INPUT_NAME, OPSET, _precision, _quantize_static

log = get_logger("detection.onnx")


def export_core_onnx(detector, insize: int, path: str | os.PathLike) -> Path:
    core = DetectorCore(detector).eval()
    names = list(OUTPUT_NAMES[core.kind])
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(core, (torch.rand(1, 3, insize, insize),), str(path), dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=names,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}})
    return Path(path)


def quantize_detector_onnx(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike,
                           output_dir: str | os.PathLike, config: OnnxPTQConfig) -> ModelMetadata:
    import onnx

    detector, parent, data = load_detection_inputs(model_dir, dataset_dir)
    require_one_stage(detector, "ONNX PTQ")
    calibration = calibration_images(data, config.batch_size)
    log.info("detection ONNX PTQ (%s) format=%s activations=%s weights=%s per_channel=%s, %d calibration batches",
             parent.architecture, config.quant_format, config.activation_type, config.weight_type,
             config.per_channel, len(calibration))
    metadata = core_metadata(parent, model_dir, detector, stage="quantize_onnx", precision=_precision(config),
                             fmt="onnx", params=to_spec(config))
    with tempfile.TemporaryDirectory() as tmp, staged_output(output_dir) as scratch:
        fp32 = export_core_onnx(detector, parent.input_size, Path(tmp) / "fp32.onnx")
        _quantize_static(fp32, scratch / metadata.file_name, calibration, config)
        onnx.checker.check_model(str(scratch / metadata.file_name))
        save_decoder(detector, scratch)
        write_model_metadata(scratch, metadata)
    log.info("INT8 detection core written to %s (post-processing in decoder.safetensors + decoder.arch.json)", output_dir)
    return metadata
