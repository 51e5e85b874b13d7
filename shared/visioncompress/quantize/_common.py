"""Pieces every quantization backend shares."""

from __future__ import annotations

import os
from pathlib import Path

from visioncompress.artifacts import ModelMetadata, read_model_metadata
from visioncompress.config import to_spec
from visioncompress.data import PreparedDataset, load_dataset
from visioncompress.errors import ArtifactError
from visioncompress.models import load_torch_module


def load_inputs(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike):
    """The FP32 torch model, its metadata, and the dataset (checked to belong together)."""
    metadata = read_model_metadata(model_dir)
    dataset = load_dataset(dataset_dir)
    if metadata.num_classes != dataset.manifest.num_classes or metadata.input_size != dataset.manifest.input_size:
        raise ArtifactError(
            f"model {model_dir} ({metadata.num_classes} classes, {metadata.input_size}px) does not match dataset "
            f"{dataset_dir} ({dataset.manifest.num_classes} classes, {dataset.manifest.input_size}px)"
        )
    return load_torch_module(model_dir), metadata, dataset


def calibration_arrays(dataset: PreparedDataset, batch_size: int = 1, limit: int = 0):
    """Calibration batches (float32 NCHW); drawn from training data by data preparation."""
    return [x for x, _ in dataset.batches("calibration", batch_size, limit=limit)]


def derived_metadata(parent: ModelMetadata, parent_dir: str | os.PathLike, *, stage: str, precision: str,
                     config, fmt: str) -> ModelMetadata:
    return parent.derive(
        stage=stage, precision=precision, format=fmt, params=to_spec(config),
        parent={"model": str(Path(parent_dir)), "stage": parent.stage, "format": parent.format},
        metrics={},
    )
