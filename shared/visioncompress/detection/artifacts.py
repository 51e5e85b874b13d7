"""Detection model artifacts: the eager model, or an end-to-end exported detector (ONNX / OpenVINO / TensorRT).

An exported artifact is one model file, image batch in, detections out (``detection.export``): its metadata's
``params["detection_export"]`` records the outputs and their padding convention, the post-processing settings
baked into the graph, and the post-processing nodes that quantization left in floating point.
"""

from __future__ import annotations

import os
from pathlib import Path

from visioncompress.artifacts import ModelMetadata, read_model_metadata
from visioncompress.detection.data import DetectionData, load_detection_dataset
from visioncompress.errors import ArtifactError
from visioncompress.models import load_torch_module


def load_detection_inputs(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike):
    """The FP32 detector, its metadata and the detection dataset (checked to belong together)."""
    metadata = read_model_metadata(model_dir)
    data = load_detection_dataset(dataset_dir)
    if metadata.task != "detection":
        raise ArtifactError(f"{model_dir} holds a {metadata.task} model; this stage needs a detection model")
    if metadata.num_classes != data.manifest.num_classes or metadata.input_size != data.manifest.input_size:
        raise ArtifactError(f"model {model_dir} ({metadata.num_classes} classes, {metadata.input_size}px) does not "
                            f"match dataset {dataset_dir} ({data.manifest.num_classes} classes, "
                            f"{data.manifest.input_size}px)")
    if metadata.format != "torch-module":
        raise ArtifactError(f"{model_dir} is a {metadata.format} detector; export and quantization start from the "
                            "FP32 torch model (the fine-tune, distill or prune output)")
    return load_torch_module(model_dir), metadata, data


def calibration_images(data: DetectionData, batch_size: int = 1, limit: int = 0, split: str = "calibration") -> list:
    return [images.numpy() for images, _ in data.batches(split, batch_size, limit=limit)]


def export_info(settings, fp_nodes: list[str], *, quantized_by: str = "") -> dict:
    """What ``params["detection_export"]`` says about an exported detector."""
    from visioncompress.detection.export import INPUT_NAME, OUTPUTS, PADDING

    return {"input": INPUT_NAME, "outputs": list(OUTPUTS), "padding": dict(PADDING),
            "nms": "ONNX NonMaxSuppression (per class, inside the graph)",
            "post_processing": settings.as_dict(), "fp_nodes": list(fp_nodes), "fp_node_count": len(fp_nodes),
            "quantized_by": quantized_by}


def exported_metadata(parent: ModelMetadata, parent_dir, *, stage: str, precision: str, fmt: str, params: dict,
                      info: dict) -> ModelMetadata:
    return parent.derive(stage=stage, precision=precision, format=fmt,
                         params={**params, "detection_export": info},
                         parent={"model": str(Path(parent_dir)), "stage": parent.stage, "format": parent.format},
                         metrics={})
