"""Where the time goes: per-operator timings from the runtime's own profiler, summed by operator type.

ONNX Runtime: ``SessionOptions.enable_profiling`` (a Chrome-trace JSON of every node run); OpenVINO:
``PERF_COUNT`` (``InferRequest.get_profiling_info``: per executed node, its type and the kernel it ran);
PyTorch: ``torch.profiler`` (self CPU time per operator, e.g. ``quantized::conv2d.new``).
Used to explain a speed-up that misses its target, from measurements rather than guesses.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np


def _top(totals: dict[str, float], runs: int, top: int) -> list[dict]:
    all_ms = sum(totals.values()) or 1.0
    ordered = sorted(totals.items(), key=lambda item: -item[1])[:top]
    return [{"op": name, "ms": round(ms / runs, 3), "share": round(ms / all_ms, 3)} for name, ms in ordered]


def onnxruntime_profile(path: str | os.PathLike, batch: np.ndarray, *, threads: int, runs: int = 5,
                        top: int = 8) -> list[dict]:
    """Mean ms per run by operator type (fused kernels appear under their own names, e.g. QLinearConv)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: batch}
        for _ in range(runs):
            session.run(None, feed)
        trace = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = defaultdict(float)
    for event in trace:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            totals[event.get("args", {}).get("op_name", "?")] += event.get("dur", 0) / 1000.0
    return _top(totals, runs, top)


def openvino_profile(path: str | os.PathLike, batch: np.ndarray, *, threads: int, precision: str | None = None,
                     runs: int = 5, top: int = 8) -> list[dict]:
    """Mean ms per run by executed node type and kernel (e.g. ``Convolution jit_avx512_amx_I8``)."""
    import openvino as ov

    from visioncompress.benchmark.runners import OPENVINO_HINTS

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = OPENVINO_HINTS[precision]
    request = core.compile_model(core.read_model(str(path)), "CPU", config).create_infer_request()
    totals: dict[str, float] = defaultdict(float)
    for _ in range(runs):
        request.infer({0: batch})
        for info in request.get_profiling_info():
            if info.status == info.Status.EXECUTED:
                totals[f"{info.node_type} {info.exec_type}"] += info.real_time.total_seconds() * 1000.0
    return _top(totals, runs, top)


def torch_profile(module, batch: np.ndarray, *, threads: int, runs: int = 5, top: int = 8) -> list[dict]:
    """Mean ms per run by operator (self CPU time: an operator's own time, not its callees')."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    x = torch.from_numpy(batch)
    with torch.inference_mode():
        module(x)  # the first TorchScript run optimises the graph: keep it out of the profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                module(x)
    totals = {e.key: e.self_cpu_time_total / 1000.0 for e in prof.key_averages() if e.self_cpu_time_total > 0}
    return _top(totals, runs, top)
