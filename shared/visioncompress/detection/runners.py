"""Detection runners: ``predict(float32 N x 3 x S x S in [0, 1]) -> [{boxes, scores, labels}]``.

Every runner includes post-processing, so latencies compare end to end.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from visioncompress.artifacts import read_model_metadata
from visioncompress.benchmark.runners import OnnxRunner, OpenVinoRunner, default_threads
from visioncompress.detection.artifacts import load_decoder
from visioncompress.models.io import load_torch_module
from visioncompress.detection.heads import decode, predict
from visioncompress.errors import MissingDependencyError


class EagerDetectorRunner:
    def __init__(self, module: torch.nn.Module, threads: int):
        torch.set_num_threads(threads)
        self._module = module.eval()

    def predict(self, batch: np.ndarray) -> list[dict]:
        return predict(self._module, torch.from_numpy(batch))


class CoreRunner:
    """A core in ONNX Runtime or OpenVINO, then the decoder in PyTorch."""

    def __init__(self, model_dir: Path, metadata, threads: int):
        torch.set_num_threads(threads)
        path = model_dir / metadata.file_name
        self._raw = OnnxRunner(path, threads) if metadata.format == "onnx" else OpenVinoRunner(path, threads)
        self._decoder = load_decoder(model_dir)
        info = metadata.params["detection_core"]
        self._insize, self._levels = metadata.input_size, [tuple(s) for s in info["level_sizes"]]

    def predict(self, batch: np.ndarray) -> list[dict]:
        with torch.inference_mode():
            return decode(self._decoder, self._insize, self._levels, self._raw.outputs(batch))


def detection_runner(model_dir: str | os.PathLike, threads: int = 0):
    model_dir = Path(model_dir)
    metadata = read_model_metadata(model_dir)
    threads = default_threads(threads)
    if metadata.format == "torch-module":
        module = load_torch_module(model_dir)
        return metadata, EagerDetectorRunner(module, threads)
    if metadata.format in ("onnx", "openvino-ir"):
        return metadata, CoreRunner(model_dir, metadata, threads)
    raise MissingDependencyError(f"no detection runner for model format {metadata.format!r}")
