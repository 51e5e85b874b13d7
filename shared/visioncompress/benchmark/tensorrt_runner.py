"""TensorRT runner: ``predict(float32 NCHW batch) -> logits`` (``outputs`` -> every output tensor) through a deserialised engine on the GPU.

Uses the TensorRT 10 name-based I/O API (``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``)
with torch CUDA tensors as device buffers and one torch CUDA stream.

Batch sizes: an engine only accepts batches inside its optimization profile. A batch larger than the
profile's maximum is split into chunks of that maximum, and a chunk smaller than the profile's minimum
is zero-padded (the padding rows are dropped from the result). So any batch size works: a static
BATCH_SIZE=1 engine measured at batch 32 runs 32 engine executions, which is what pushing 32 images
through that engine costs. Build with DYNAMIC_BATCH (and MAX_BATCH_SIZE >= the largest benchmark
batch) to measure true batched execution. Latency includes the host->device and device->host copies,
like the CPU runtimes, which also take and return host arrays.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from visioncompress.errors import ArtifactError
from visioncompress.quantize.tensorrt import require_tensorrt, tensorrt_logger


class TensorRTRunner:
    def __init__(self, engine_path: str | os.PathLike):
        trt = require_tensorrt()
        import torch

        self._torch = torch
        self._runtime = trt.Runtime(tensorrt_logger())
        self._engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self._engine is None:
            raise ArtifactError(f"{engine_path} does not deserialise with this TensorRT ({trt.__version__}); "
                                "engines only load in the TensorRT version (and GPU family) that built them")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or not outputs:
            raise ArtifactError(f"{engine_path}: expected one input and at least one output tensor, got {inputs} / "
                                f"{outputs}")
        self._input, self.output_names = inputs[0], outputs

        shape = tuple(self._engine.get_tensor_shape(self._input))
        self._dynamic = shape[0] == -1
        if self._dynamic:
            low, _, high = self._engine.get_tensor_profile_shape(self._input, 0)
            self.min_batch, self.max_batch = int(low[0]), int(high[0])
        else:
            self.min_batch = self.max_batch = int(shape[0])
        self.sample_shape = tuple(int(d) for d in shape[1:])
        self._input_dtype = self._torch_dtype(trt.nptype(self._engine.get_tensor_dtype(self._input)))
        self._output_dtypes = [self._torch_dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in outputs]
        self._device = torch.device("cuda")
        self._stream = torch.cuda.Stream()

    def _torch_dtype(self, numpy_type):
        return self._torch.from_numpy(np.empty(0, dtype=numpy_type)).dtype

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.outputs(batch)[0]

    def outputs(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output tensor of the engine, in its I/O order (detectors have several)."""
        chunks = [self._run(batch[start : start + self.max_batch]) for start in range(0, len(batch), self.max_batch)]
        return [np.concatenate(parts) if len(parts) > 1 else parts[0] for parts in zip(*chunks)]

    def _run(self, chunk: np.ndarray) -> list[np.ndarray]:
        torch = self._torch
        n = len(chunk)
        if n < self.min_batch:
            pad = np.zeros((self.min_batch - n, *chunk.shape[1:]), dtype=chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        with torch.cuda.stream(self._stream):
            x = torch.from_numpy(np.ascontiguousarray(chunk)).to(self._device, self._input_dtype)
            if self._dynamic and not self._context.set_input_shape(self._input, tuple(x.shape)):
                raise ArtifactError(f"the engine refused input shape {tuple(x.shape)} "
                                    f"(profile batch {self.min_batch}..{self.max_batch}, sample {self.sample_shape})")
            outs = [torch.empty(tuple(self._context.get_tensor_shape(name)), dtype=dtype, device=self._device)
                    for name, dtype in zip(self.output_names, self._output_dtypes)]
            self._context.set_tensor_address(self._input, x.data_ptr())
            for name, out in zip(self.output_names, outs):
                self._context.set_tensor_address(name, out.data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise ArtifactError("TensorRT execute_async_v3 failed (its log above says why)")
            self._stream.synchronize()
            return [(out[:n].float() if out.is_floating_point() else out[:n]).cpu().numpy() for out in outs]
