"""Detection model artifacts: the eager model, or a core (ONNX / OpenVINO) plus its decoder.

A core artifact holds ``decoder.safetensors`` + ``decoder.arch.json`` next to the model file: the
detector with its backbone and head removed (anchors, box coder, thresholds, NMS settings), saved
as data (``visioncompress.models.safe_module``, no pickle) and used to turn the runtime's raw
outputs into boxes. Both files are covered by the artifact's sha256 record in model.json.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from torch import nn

from visioncompress.artifacts import ModelMetadata, read_model_metadata
from visioncompress.detection.data import DetectionData, load_detection_dataset
from visioncompress.detection.heads import OUTPUT_NAMES, family, feature_shapes
from visioncompress.errors import ArtifactError
from visioncompress.models import load_torch_module
from visioncompress.models.safe_module import load_module, save_module

DECODER_STEM = "decoder"
DECODER_FILE = "decoder.safetensors"


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
    return load_torch_module(model_dir), metadata, data


def core_info(detector: nn.Module, insize: int) -> dict:
    """What a runtime needs to decode the core's outputs: output names and feature-map sizes."""
    return {"family": family(detector), "outputs": list(OUTPUT_NAMES[family(detector)]),
            "level_sizes": [list(s[-2:]) for s in feature_shapes(detector, insize)], "decoder": DECODER_FILE}


def save_decoder(detector: nn.Module, directory: Path) -> None:
    decoder = copy.copy(detector)
    decoder._modules = dict(detector._modules)
    decoder.backbone, decoder.head = nn.Identity(), nn.Identity()
    save_module(decoder, directory, DECODER_STEM)


def load_decoder(directory: str | os.PathLike) -> nn.Module:
    """The decoder of a core artifact (its checksums were verified when model.json was read)."""
    path = Path(directory) / DECODER_FILE
    if not path.is_file():
        raise ArtifactError(f"detection model artifact {directory} has no {DECODER_FILE}")
    return load_module(directory, DECODER_STEM)


def calibration_images(data: DetectionData, batch_size: int = 1, limit: int = 0) -> list:
    return [images.numpy() for images, _ in data.batches("calibration", batch_size, limit=limit)]


def core_metadata(parent: ModelMetadata, parent_dir, detector: nn.Module, *, stage: str, precision: str,
                  fmt: str, params: dict) -> ModelMetadata:
    return parent.derive(stage=stage, precision=precision, format=fmt,
                         params={**params, "detection_core": core_info(detector, parent.input_size)},
                         parent={"model": str(Path(parent_dir)), "stage": parent.stage, "format": parent.format},
                         metrics={})
