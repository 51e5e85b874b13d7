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
    """Eager or TorchScript module; ``dtype`` (e.g. torch.bfloat16) casts the input, logits come back as float32."""

    def __init__(self, module, threads: int, dtype=None):
        import torch

        torch.set_num_threads(threads)
        self._torch, self._module, self._dtype = torch, module, dtype

    @property
    def module(self):
        return self._module

    def predict(self, batch: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            x = self._torch.from_numpy(batch)
            if self._dtype is not None:
                x = x.to(self._dtype)
            return self._module(x).float().numpy()


def torchscript_frozen(module, example, dtype=None):
    """``module`` compiled the way the PyTorch INT8 artifact is: ``torch.jit.trace`` then ``torch.jit.freeze``."""
    import copy
    import warnings

    import torch

    module = copy.deepcopy(module).eval()
    if dtype is not None:
        module, example = module.to(dtype), example.to(dtype)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        return torch.jit.freeze(torch.jit.trace(module, example, check_trace=False).eval())


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


OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def openvino_float_precisions() -> list[str]:
    """Floating-point precisions this node's OpenVINO CPU plugin runs natively (fp32 always first)."""
    import openvino as ov

    capabilities = set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return ["fp32"] + [p for p, cap in (("bf16", "BF16"), ("fp16", "FP16")) if cap in capabilities]


class OpenVinoRunner:
    """``precision`` (fp32/bf16/fp16) sets INFERENCE_PRECISION_HINT; None keeps OpenVINO's default, which is
    bf16 on CPUs with AVX-512 BF16 or AMX, so an FP32 measurement must ask for fp32."""

    def __init__(self, path: Path, threads: int, precision: str | None = None):
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(path))
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if precision is not None:
            config["INFERENCE_PRECISION_HINT"] = OPENVINO_HINTS[precision]
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        self.inference_precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self._request.infer({0: batch})[0].copy()

    def outputs(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output of the model, in order (detectors have several)."""
        result = self._request.infer({0: batch})
        return [result[i].copy() for i in range(len(result))]


def runner_for(metadata: ModelMetadata, model_path: Path, threads: int = 0, module=None, precision: str | None = None):
    """The runner for a model file of ``metadata.format`` (or an in-memory torch ``module``).

    ``precision`` only applies to OpenVINO (its INFERENCE_PRECISION_HINT); other runtimes run the file's own types.
    """
    threads = default_threads(threads)
    if module is not None:
        return TorchRunner(module.eval(), threads)
    fmt = metadata.format
    if fmt == "torch-module":
        from visioncompress.models.io import load_torch_module

        return TorchRunner(load_torch_module(Path(model_path).parent), threads)
    if fmt == "torchscript":
        import torch

        from visioncompress.quantize.torch import use_engine

        use_engine(metadata)  # an INT8 model runs under the engine it was quantized for
        return TorchRunner(torch.jit.load(str(model_path), map_location="cpu").eval(), threads)
    if fmt == "onnx":
        return OnnxRunner(model_path, threads)
    if fmt == "openvino-ir":
        return OpenVinoRunner(model_path, threads, precision)
    if fmt == "tensorrt-engine":
        from visioncompress.benchmark.tensorrt_runner import TensorRTRunner  # GPU nodes only

        return TensorRTRunner(model_path)
    raise MissingDependencyError(f"no runner for model format {fmt!r}")


def load_runner(model_dir: str | os.PathLike, threads: int = 0):
    metadata = read_model_metadata(model_dir)
    return metadata, runner_for(metadata, Path(model_dir) / metadata.file_name, threads)
