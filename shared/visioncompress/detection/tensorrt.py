"""CPU half of TensorRT PTQ for detectors: the end-to-end graph with symmetric INT8 Q/DQ, NMS inside.

The Q/DQ pairs go only into the detector's core (``nodes_to_exclude`` = the post-processing nodes), so
TensorRT runs backbone, FPN and head in INT8 and decoding, top-k and NMS in floating point. TensorRT's ONNX
parser turns ``NonMaxSuppression`` into its ``INMSLayer``; the engine itself is built by the generic
``quantize.tensorrt.build_engine`` on a GPU node, and benchmarked by ``ExportedDetectorRunner`` there.
OpenMMLab detectors (an mm-module artifact) take ``detection.mm.export.quantize_mm_qdq``: the same artifact,
Q/DQ only on the weighted layers' inputs and the detection head in floating point (measured there).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from visioncompress.artifacts import ModelMetadata, read_model_metadata, staged_output, write_model_metadata
from visioncompress.config.tensorrt import TensorRTConfig
from visioncompress.detection.artifacts import (
    calibration_images, export_info, exported_metadata, load_detection_inputs,
)
from visioncompress.detection.export import export_end_to_end, fp_node_names, require_exportable, resolve_settings
from visioncompress.detection.mm.stage import MM_FORMAT
from visioncompress.log import get_logger
from visioncompress.quantize.onnx import _CalibrationReader
from visioncompress.quantize.tensorrt import QDQ_STAGE, _drop_unused_opsets, _quantize_qdq, qdq_params

log = get_logger("detection.tensorrt")


def make_detector_qdq_onnx(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike,
                           output_dir: str | os.PathLike, config: TensorRTConfig, post=None) -> ModelMetadata:
    import onnx

    if read_model_metadata(model_dir).format == MM_FORMAT:  # PLATFORM mmdet / mmyolo
        from visioncompress.detection.mm.stage import quantize_mm_stage

        return quantize_mm_stage(model_dir, dataset_dir, output_dir, config, post, runtime="tensorrt")
    detector, parent, data = load_detection_inputs(model_dir, dataset_dir)
    require_exportable(detector, "TensorRT PTQ")
    settings = resolve_settings(detector, post)
    calibration = calibration_images(data, config.calibration_batch_size)  # the calibration split (training data)
    images = sum(len(b) for b in calibration)
    log.info("QDQ ONNX for TensorRT (%s, end to end): symmetric INT8 (%s), %d calibration images",
             parent.architecture, config.calibration_method, images)
    with tempfile.TemporaryDirectory() as tmp, staged_output(output_dir) as scratch:
        fp32 = export_end_to_end(detector, parent.input_size, settings, Path(tmp) / "fp32.onnx")
        target = scratch / "model.onnx"
        fp_nodes = _quantize_qdq(fp32, target, _CalibrationReader(calibration), config, exclude=fp_node_names)
        _drop_unused_opsets(target)
        onnx.checker.check_model(str(target))
        metadata = exported_metadata(parent, model_dir, stage=QDQ_STAGE, precision="int8", fmt="onnx",
                                     params=qdq_params(config),
                                     info=export_info(settings, fp_nodes, quantized_by="onnxruntime quantize_static "
                                                      "(symmetric QDQ for TensorRT)"))
        metadata.metrics = {"calibration_images": images}
        write_model_metadata(scratch, metadata)
    log.info("QDQ end-to-end detector written to %s (%d post-processing nodes in FP32)", output_dir, len(fp_nodes))
    return metadata
