"""The TensorRT branch that pipelines share: QDQ calibration on CPU, engine build and benchmark on GPU.

In a cluster a TensorRT stage on a node without TensorRT or CUDA fails with one clear line. A local run
on a machine without them sets ``TENSORRT_OPTIONAL`` (see ``local_run_params``): the engine build and
the GPU benchmark then skip with a NOTICE in their log, the GPU benchmark hands the report an empty
result list, and the rest of the comparison completes.
"""

from __future__ import annotations

import sys

from components.benchmark_gpu.component import benchmark_gpu
from components.build_tensorrt_engine.component import build_tensorrt_engine
from components.qdq_onnx.component import qdq_onnx
from pipelines.placement import on_cpu, on_gpu

OPTIONAL_PARAM = "TENSORRT_OPTIONAL"


def tensorrt_steps(fp32_model, data_task, *, BATCH_SIZE, FP16_FALLBACK, DYNAMIC_BATCH, MAX_BATCH_SIZE,
                   WORKSPACE_MB, CALIBRATION_BATCH_SIZE, CALIBRATION_METHOD, TENSORRT_OPTIONAL):
    """QDQ ONNX (CPU) -> INT8 engine (GPU) -> GPU benchmark; returns (qdq task, engine task, results)."""
    dataset = data_task.outputs["dataset"]
    qdq = on_cpu(qdq_onnx(model=fp32_model, dataset=dataset, CALIBRATION_BATCH_SIZE=CALIBRATION_BATCH_SIZE,
                          CALIBRATION_METHOD=CALIBRATION_METHOD))
    qdq.set_display_name("TensorRT PTQ: calibrated QDQ ONNX (CPU)")
    engine = on_gpu(build_tensorrt_engine(qdq_model=qdq.outputs["qdq_model"], BATCH_SIZE=BATCH_SIZE,
                                          FP16_FALLBACK=FP16_FALLBACK, DYNAMIC_BATCH=DYNAMIC_BATCH,
                                          MAX_BATCH_SIZE=MAX_BATCH_SIZE, WORKSPACE_MB=WORKSPACE_MB,
                                          TENSORRT_OPTIONAL=TENSORRT_OPTIONAL))
    engine.set_display_name("TensorRT PTQ: build INT8 engine (GPU)")
    bench = on_gpu(benchmark_gpu(model=engine.outputs["engine"], dataset=dataset, BATCH_SIZE=BATCH_SIZE))
    bench.set_display_name("benchmark TensorRT INT8 (GPU)")
    return qdq, engine, bench.outputs["results"]


def local_run_params(params: dict, pipeline_defaults: dict, *, out=None) -> dict:
    """For a local run: make the TensorRT branch optional, with a visible notice, when this machine cannot run it.

    Only when the pipeline has the parameter and the caller did not set it; an explicit
    TENSORRT_OPTIONAL=False keeps the strict behaviour (the build stage fails with its one-line reason).
    """
    if OPTIONAL_PARAM not in pipeline_defaults or OPTIONAL_PARAM in params:
        return params
    from visioncompress.quantize.tensorrt import tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason()
    if reason is None:
        return params
    print(f"NOTICE: the TensorRT branch will be skipped in this local run: {reason}. "
          f"The rest of the comparison runs as usual (set {OPTIONAL_PARAM}=False to fail instead).",
          file=out or sys.stdout, flush=True)
    return {**params, OPTIONAL_PARAM: True}
