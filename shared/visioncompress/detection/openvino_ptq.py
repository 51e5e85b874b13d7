"""OpenVINO INT8 for detectors through NNCF post-training quantization of the end-to-end model.

The end-to-end ONNX graph (``detection.export``) is converted with ``ov.convert_model`` (its
``NonMaxSuppression`` becomes OpenVINO's NMS op) and quantized by ``nncf.quantize``; the post-processing ops
are NNCF's ``ignored_scope``, so they stay in floating point, and the artifact lists them. With
MAX_ACCURACY_DROP > 0, ``nncf.quantize_with_accuracy_control`` reverts the most harmful quantized layers to
floating point until the validation split's mAP drops at most that many points.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from visioncompress.artifacts import ModelMetadata, read_model_metadata, staged_output, write_model_metadata
from visioncompress.config import OpenVinoPTQConfig, to_spec
from visioncompress.detection.artifacts import (
    calibration_images, export_info, exported_metadata, load_detection_inputs,
)
from visioncompress.detection.export import export_end_to_end, require_exportable, resolve_settings
from visioncompress.detection.metrics import coco_map
from visioncompress.detection.mm.stage import MM_FORMAT
from visioncompress.log import get_logger
from visioncompress.quantize.openvino import nncf_options

log = get_logger("detection.openvino")


def post_processing_ops(ov_model) -> list[str]:
    """Names of the OpenVINO ops outside the detector's core (decoding, NMS, top-k): NNCF's ignored scope."""
    return [op.get_friendly_name() for op in ov_model.get_ordered_ops()
            if op.get_type_name() not in ("Parameter", "Constant", "Result")
            and not op.get_friendly_name().startswith("/core/")]


def subset_map(truth: dict, image_ids: list[int], detections: list[dict]) -> float:
    """mAP (points) of ``detections[i]`` for image ``image_ids[i]``, against those images' ground truth only."""
    index = {image_id: n + 1 for n, image_id in enumerate(image_ids)}
    images = [{**im, "id": index[im["id"]]} for im in truth["images"] if im["id"] in index]
    annotations = [{**a, "image_id": index[a["image_id"]]} for a in truth["annotations"] if a["image_id"] in index]
    return coco_map({**truth, "images": images, "annotations": annotations}, detections)["mAP"]


def map_validation(data, split: str = "val"):
    """(items, validation_fn) for ``nncf.quantize_with_accuracy_control``: mAP in points on ``split``."""
    from visioncompress.detection.runners import split_detections

    truth = data.coco(split)
    items = [(n + 1, image[None]) for n, image in enumerate(np.concatenate(calibration_images(data, 8, split=split)))]

    def validation_fn(compiled_model, validation_data) -> float:
        ids, detections = [], []
        for image_id, image in validation_data:
            result = compiled_model(image)
            outputs = [result[compiled_model.outputs[i]] for i in range(4)]
            ids.append(image_id)
            detections.extend(split_detections(*outputs))
        return subset_map(truth, ids, detections)

    return items, validation_fn


def _compile_f32(model):
    """Validation in f32 (as the benchmark runs it): on CPUs with bf16 OpenVINO would otherwise run the float
    parts in bfloat16 and the FP32 reference would not be FP32."""
    import openvino as ov

    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


@contextlib.contextmanager
def _nncf_messages():
    """NNCF's log records while the block runs (its accuracy-control report is only logged)."""
    import logging

    from nncf.common.logging.logger import nncf_logger

    records: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = _Collect(level=logging.INFO)
    level = nncf_logger.level
    nncf_logger.addHandler(handler)
    nncf_logger.setLevel(min(level or logging.INFO, logging.INFO))
    try:
        yield records
    finally:
        nncf_logger.removeHandler(handler)
        nncf_logger.setLevel(level)


def accuracy_control_report(messages: list[str], metrics: dict, max_drop: float) -> dict:
    """What ``quantize_with_accuracy_control`` did: the operations it reverted to floating point (from its
    report), and whether the returned model meets MAX_ACCURACY_DROP on the validation split (measured here)."""
    reverted: list[str] = []
    quantized_ops, initial_drop = None, None
    for message in messages:
        if initial_drop is None and message.startswith("Accuracy drop: "):
            initial_drop = float(message.split()[2])  # the fully quantized model's drop, before any revert
        found = re.match(r"(\d+) out of (\d+) were reverted back to the floating-point precision:", message)
        if found:
            quantized_ops = int(found.group(2))
            reverted = [line.strip() for line in message.splitlines()[1:] if line.strip()]
    drop = round(metrics["val_mAP_fp32"] - metrics["val_mAP"], 4)
    return {"max_drop": max_drop, "initial_drop": initial_drop, "drop": drop, "meets_max_drop": drop <= max_drop,
            "reverted": reverted,
            "quantized_operations": quantized_ops,
            "nncf": [m for m in messages if m.startswith(("Algorithm completed", "Accuracy drop", "The algorithm",
                                                          "Maximum number"))]}


def quantize_detector_openvino(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike,
                               output_dir: str | os.PathLike, config: OpenVinoPTQConfig, post=None) -> ModelMetadata:
    import nncf
    import openvino as ov

    if read_model_metadata(model_dir).format == MM_FORMAT:  # PLATFORM mmdet / mmyolo
        from visioncompress.detection.mm.stage import quantize_mm_stage

        return quantize_mm_stage(model_dir, dataset_dir, output_dir, config, post, runtime="openvino")
    detector, parent, data = load_detection_inputs(model_dir, dataset_dir)
    require_exportable(detector, "OpenVINO PTQ")
    settings = resolve_settings(detector, post)
    calibration = [b[i:i + 1] for b in calibration_images(data, 8, limit=config.subset_size) for i in range(len(b))]
    with tempfile.TemporaryDirectory() as tmp:
        ov_model = ov.convert_model(str(export_end_to_end(detector, parent.input_size, settings,
                                                          Path(tmp) / "fp32.onnx")))
    ignored = post_processing_ops(ov_model)
    common = nncf_options(config, len(calibration), ignored)
    metrics = {}
    if config.max_accuracy_drop > 0:
        items, validation_fn = map_validation(data)
        log.info("NNCF PTQ with accuracy control (%s, end to end): %d calibration images, mAP drop <= %g points "
                 "on %d validation images; %d post-processing ops ignored", parent.architecture, len(calibration),
                 config.max_accuracy_drop, len(items), len(ignored))
        with _nncf_messages() as messages:
            quantized = nncf.quantize_with_accuracy_control(
                ov_model, nncf.Dataset(calibration), nncf.Dataset(items, lambda item: item[1]), validation_fn,
                max_drop=config.max_accuracy_drop, drop_type=nncf.DropType.ABSOLUTE, **common)
        metrics["val_mAP"] = validation_fn(_compile_f32(quantized), items)
        metrics["val_mAP_fp32"] = validation_fn(_compile_f32(ov_model), items)
        metrics["accuracy_control"] = accuracy_control_report(messages, metrics, config.max_accuracy_drop)
        log.info("accuracy control: validation mAP %.2f (FP32 %.2f), %d quantized operations reverted to floating "
                 "point", metrics["val_mAP"], metrics["val_mAP_fp32"], len(metrics["accuracy_control"]["reverted"]))
    else:
        log.info("NNCF PTQ (%s, end to end) on %d calibration images (preset=%s); %d post-processing ops ignored",
                 parent.architecture, len(calibration), config.preset, len(ignored))
        quantized = nncf.quantize(ov_model, nncf.Dataset(calibration), **common)
    metadata = exported_metadata(parent, model_dir, stage="quantize_openvino", precision="int8", fmt="openvino-ir",
                                 params=to_spec(config),
                                 info=export_info(settings, ignored, quantized_by="nncf.quantize_with_accuracy_control"
                                                  if config.max_accuracy_drop > 0 else "nncf.quantize"))
    metadata.metrics = metrics
    with staged_output(output_dir) as scratch:
        ov.save_model(quantized, str(scratch / metadata.file_name), compress_to_fp16=False)
        write_model_metadata(scratch, metadata)
    log.info("INT8 end-to-end OpenVINO detector written to %s (%d post-processing ops in floating point)",
             output_dir, len(ignored))
    return metadata
