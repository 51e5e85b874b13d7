"""OpenVINO conversion and NNCF post-training INT8 quantization."""

from __future__ import annotations

import os

import numpy as np

from visioncompress.artifacts import ModelMetadata, staged_output, write_model_metadata
from visioncompress.config import OpenVinoPTQConfig
from visioncompress.log import get_logger
from visioncompress.quantize._common import calibration_arrays, derived_metadata, load_inputs

log = get_logger("quantize.openvino")


def convert_to_openvino(model, example):
    """An ``openvino.Model`` with a dynamic batch axis and input named ``input``."""
    import openvino as ov
    import torch

    channels, height, width = example.shape[1:]
    with torch.inference_mode():
        ov_model = ov.convert_model(model.eval(), example_input=example,
                                    input=[ov.PartialShape([-1, channels, height, width])])
    ov_model.inputs[0].get_tensor().set_names({"input"})
    return ov_model


def nncf_options(config: OpenVinoPTQConfig, subset_size: int, ignored=()) -> dict:
    """``nncf.quantize`` / ``quantize_with_accuracy_control`` keywords: PRESET, TRANSFORMER, FAST_BIAS_CORRECTION,
    the calibration size, and the operations ``ignored`` (left in floating point)."""
    import nncf

    options = dict(subset_size=subset_size, fast_bias_correction=config.fast_bias_correction,
                   preset=nncf.QuantizationPreset.PERFORMANCE if config.preset == "performance"
                   else nncf.QuantizationPreset.MIXED,
                   model_type=nncf.ModelType.TRANSFORMER if config.transformer else None)
    if ignored:
        options["ignored_scope"] = nncf.IgnoredScope(names=list(ignored), validate=False)
    return options


def quantize_openvino(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, output_dir: str | os.PathLike,
                      config: OpenVinoPTQConfig) -> ModelMetadata:
    import nncf
    import openvino as ov
    import torch

    model, parent, dataset = load_inputs(model_dir, dataset_dir)
    example = torch.from_numpy(dataset.example_input(1))
    ov_model = convert_to_openvino(model, example)
    calibration = calibration_arrays(dataset, 1, limit=config.subset_size)
    log.info("NNCF PTQ on %d calibration images (TRANSFORMER=%s, preset=%s)",
             len(calibration), config.transformer, config.preset)
    common = nncf_options(config, len(calibration))
    metrics = {}
    if config.max_accuracy_drop > 0:
        items = [(x[i:i + 1], int(y[i])) for x, y in dataset.batches("val", 64) for i in range(len(x))]

        def validation_fn(compiled_model, validation_data) -> float:
            hits = [int(np.argmax(compiled_model(x)[compiled_model.outputs[0]]) == y) for x, y in validation_data]
            return 100.0 * sum(hits) / max(len(hits), 1)

        log.info("NNCF PTQ with accuracy control: top-1 drop <= %g points on %d validation images",
                 config.max_accuracy_drop, len(items))
        quantized = nncf.quantize_with_accuracy_control(
            ov_model, nncf.Dataset(calibration), nncf.Dataset(items, lambda item: item[0]), validation_fn,
            max_drop=config.max_accuracy_drop, drop_type=nncf.DropType.ABSOLUTE, **common)
        metrics["val_top1"] = validation_fn(ov.Core().compile_model(quantized, "CPU"), items)
    else:
        quantized = nncf.quantize(ov_model, nncf.Dataset(calibration), **common)
    metadata = derived_metadata(parent, model_dir, stage="quantize_openvino", precision="int8",
                                config=config, fmt="openvino-ir")
    metadata.metrics = {**metadata.metrics, **metrics}
    with staged_output(output_dir) as scratch:
        ov.save_model(quantized, str(scratch / metadata.file_name), compress_to_fp16=False)
        write_model_metadata(scratch, metadata)
    log.info("INT8 OpenVINO IR written to %s (load with %s)", output_dir, metadata.load_call)
    return metadata
