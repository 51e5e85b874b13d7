"""ONNX Runtime static INT8 for detectors, on the end-to-end graph.

The whole detector (``detection.export``) is exported and quantized; the post-processing nodes (decoding,
thresholds, NMS, top-k) are passed to ``quantize_static`` as ``nodes_to_exclude``, so they stay in FP32 and
the artifact lists them (``params.detection_export.fp_nodes``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from visioncompress.artifacts import ModelMetadata, read_model_metadata, staged_output, write_model_metadata
from visioncompress.config import OnnxPTQConfig, to_spec
from visioncompress.detection.artifacts import (
    calibration_images, export_info, exported_metadata, load_detection_inputs,
)
from visioncompress.detection.export import export_end_to_end, fp_node_names, require_exportable, resolve_settings
from visioncompress.detection.mm.stage import MM_FORMAT
from visioncompress.log import get_logger
from visioncompress.quantize.onnx import _precision, _quantize_static

log = get_logger("detection.onnx")


def quantize_detector_onnx(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike,
                           output_dir: str | os.PathLike, config: OnnxPTQConfig, post=None) -> ModelMetadata:
    import onnx

    if read_model_metadata(model_dir).format == MM_FORMAT:  # PLATFORM mmdet / mmyolo
        from visioncompress.detection.mm.stage import quantize_mm_stage

        return quantize_mm_stage(model_dir, dataset_dir, output_dir, config, post, runtime="onnx")
    detector, parent, data = load_detection_inputs(model_dir, dataset_dir)
    require_exportable(detector, "ONNX PTQ")
    settings = resolve_settings(detector, post)
    calibration = calibration_images(data, config.batch_size)
    log.info("detection ONNX PTQ (%s, end to end) format=%s activations=%s weights=%s per_channel=%s, "
             "%d calibration batches; post-processing %s", parent.architecture, config.quant_format,
             config.activation_type, config.weight_type, config.per_channel, len(calibration), settings.as_dict())
    with tempfile.TemporaryDirectory() as tmp, staged_output(output_dir) as scratch:
        fp32 = export_end_to_end(detector, parent.input_size, settings, Path(tmp) / "fp32.onnx")
        target = scratch / "model.onnx"
        fp_nodes = _quantize_static(fp32, target, calibration, config, exclude=fp_node_names)
        metadata = exported_metadata(parent, model_dir, stage="quantize_onnx", precision=_precision(config),
                                     fmt="onnx", params=to_spec(config),
                                     info=export_info(settings, fp_nodes, quantized_by="onnxruntime quantize_static"))
        onnx.checker.check_model(str(scratch / metadata.file_name))
        write_model_metadata(scratch, metadata)
    log.info("INT8 end-to-end detector written to %s (%d post-processing nodes kept in FP32)", output_dir,
             len(fp_nodes))
    return metadata
