"""One runner per runtime: ``predict(float32 NCHW batch) -> logits`` in the model's own runtime."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from visioncompress.artifacts import ModelMetadata, read_model_metadata
from visioncompress.errors import MissingDependencyError


def default_threads(threads: int = 0) -> int:
    """THREADS when set, else the pod's CPU quota, else the visible cores."""
    from visioncompress.resources import thread_count

    return thread_count(threads).count


class TorchRunner:
    def __init__(self, module, threads: int):
        import torch

        torch.set_num_threads(threads)
        self._torch, self._module = torch, module

    def predict(self, batch: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self._module(self._torch.from_numpy(batch)).numpy()


class OnnxRunner:
    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: batch})[0]

    def outputs(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output of the graph, in order (detectors have several)."""
        return self._session.run(None, {self._input: batch})


class OpenVinoRunner:
    def __init__(self, path: Path, threads: int):
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(path))
        self._compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                           "PERFORMANCE_HINT": "LATENCY"})
        self._request = self._compiled.create_infer_request()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self._request.infer({0: batch})[0].copy()

    def outputs(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output of the model, in order (detectors have several)."""
        result = self._request.infer({0: batch})
        return [result[i].copy() for i in range(len(result))]


def runner_for(metadata: ModelMetadata, model_path: Path, threads: int = 0, module=None):
    """The runner for a model file of ``metadata.format`` (or an in-memory torch ``module``)."""
    threads = default_threads(threads)
    if module is not None:
        return TorchRunner(module.eval(), threads)
    fmt = metadata.format
    if fmt == "torch-module":
        from visioncompress.models.io import load_torch_module

        return TorchRunner(load_torch_module(Path(model_path).parent), threads)
    if fmt == "torchscript":
        import torch

        return TorchRunner(torch.jit.load(str(model_path), map_location="cpu").eval(), threads)
    if fmt == "onnx":
        return OnnxRunner(model_path, threads)
    if fmt == "openvino-ir":
        return OpenVinoRunner(model_path, threads)
    if fmt == "tensorrt-engine":
        from visioncompress.benchmark.tensorrt_runner import TensorRTRunner  # GPU nodes only

        return TensorRTRunner(model_path)
    raise MissingDependencyError(f"no runner for model format {fmt!r}")


def load_runner(model_dir: str | os.PathLike, threads: int = 0):
    metadata = read_model_metadata(model_dir)
    return metadata, runner_for(metadata, Path(model_dir) / metadata.file_name, threads)
