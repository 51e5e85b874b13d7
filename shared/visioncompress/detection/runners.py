"""Detection runners: ``predict(float32 N x 3 x S x S in [0, 1]) -> [{boxes, scores, labels}]``.

An exported detector runs in its own runtime alone (ONNX Runtime, OpenVINO, TensorRT), image batch in,
detections out, so the benchmark times what is deployed. The eager runner serves the FP32 torch model.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from visioncompress.artifacts import read_model_metadata
from visioncompress.benchmark.runners import OnnxRunner, default_threads
from visioncompress.errors import ArtifactError, MissingDependencyError


def split_detections(boxes, scores, labels, num) -> list[dict]:
    """An exported detector's padded outputs -> one dict of arrays per image, padding dropped (no torch)."""
    return [{"boxes": boxes[i, :int(n)], "scores": scores[i, :int(n)], "labels": labels[i, :int(n)]}
            for i, n in enumerate(num)]


class EagerDetectorRunner:
    def __init__(self, module, threads: int):
        import torch

        torch.set_num_threads(threads)
        self._module = module.eval()

    def predict(self, batch: np.ndarray) -> list[dict]:
        import torch

        from visioncompress.detection.heads import predict

        return predict(self._module, torch.from_numpy(batch))


class MMDetectorRunner:
    """An OpenMMLab detector artifact (``mm-module``: PLATFORM mmdet / mmyolo) in its own eager PyTorch; labels
    1..C like every other runner's."""

    def __init__(self, path: Path, threads: int):
        import torch

        from visioncompress.detection.mm.model import load_model

        torch.set_num_threads(threads)
        self._model = load_model(path).eval()  # our own file, its sha256 checked against model.json first

    def predict(self, batch: np.ndarray) -> list[dict]:
        images = [np.ascontiguousarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0))
                  for image in np.asarray(batch)]
        return [{"boxes": d["boxes"], "scores": d["scores"], "labels": d["labels"] + 1}
                for d in self._model.predict(images, score_thr=0.0)]


class OpenVinoDetectorRunner:
    """OpenVINO CPU with FP32 as the floating-point precision: on CPUs with AMX/AVX-512 BF16 OpenVINO would
    otherwise run an "FP32" model (and the float parts of an INT8 one) in bfloat16."""

    def __init__(self, path: Path, threads: int):
        import openvino as ov

        core = ov.Core()
        self._compiled = core.compile_model(core.read_model(str(path)), "CPU", {
            "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
        self._request = self._compiled.create_infer_request()

    def outputs(self, batch: np.ndarray) -> list[np.ndarray]:
        result = self._request.infer({0: batch})
        return [result[i].copy() for i in range(len(result))]


class ExportedDetectorRunner:
    """An end-to-end detector in ONNX Runtime, OpenVINO or TensorRT: no PyTorch between image and detections."""

    def __init__(self, model_dir: Path, metadata, threads: int):
        info = metadata.params.get("detection_export")
        if info is None:
            raise ArtifactError(f"{model_dir} is a {metadata.format} detector without an end-to-end graph "
                                "(params.detection_export); re-run its quantization or export stage")
        path = model_dir / metadata.file_name
        if metadata.format == "onnx":
            self._raw = OnnxRunner(path, threads)
        elif metadata.format == "openvino-ir":
            self._raw = OpenVinoDetectorRunner(path, threads)
        else:
            from visioncompress.benchmark.tensorrt_runner import TensorRTRunner  # GPU nodes only

            self._raw = TensorRTRunner(path)
        self._order = list(info["outputs"])

    def outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self._order, self._raw.outputs(np.ascontiguousarray(batch, dtype=np.float32))))

    def predict(self, batch: np.ndarray) -> list[dict]:
        out = self.outputs(batch)
        return split_detections(out["boxes"], out["scores"], out["labels"], out["num_detections"])


def detection_runner(model_dir: str | os.PathLike, threads: int = 0):
    model_dir = Path(model_dir)
    metadata = read_model_metadata(model_dir)
    threads = default_threads(threads)
    if metadata.format == "torch-module":
        from visioncompress.models.io import load_torch_module

        return metadata, EagerDetectorRunner(load_torch_module(model_dir), threads)
    if metadata.format == "mm-module":
        return metadata, MMDetectorRunner(model_dir / metadata.file_name, threads)
    if metadata.format in ("onnx", "openvino-ir", "tensorrt-engine"):
        return metadata, ExportedDetectorRunner(model_dir, metadata, threads)
    raise MissingDependencyError(f"no detection runner for model format {metadata.format!r}")
