"""ONNX export and ONNX Runtime static INT8 quantization.

``activation_type``/``quant_format`` ``auto`` choose the 8-bit form for the node that runs the step
(``choose_form``, from the CPU's features; with ``TUNE`` by timing the candidates there, ``tune_form``).
The choice and its reason are written into the model's metadata (``params["INT8_FORM"]``).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from visioncompress.artifacts import ModelMetadata, staged_output, write_model_metadata
from visioncompress.config import OnnxPTQConfig
from visioncompress.config.quantize import AUTO
from visioncompress.cpu import CpuFeatures, cpu_features
from visioncompress.log import get_logger
from visioncompress.quantize._common import calibration_arrays, derived_metadata, load_inputs

log = get_logger("quantize.onnx")

INPUT_NAME, OUTPUT_NAME = "input", "logits"
OPSET = 17


def export_onnx(model, example, path: str | os.PathLike) -> Path:
    """Write ``model`` as a single-file ONNX graph with a dynamic batch axis."""
    import warnings

    import torch

    path = Path(path)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        # The TorchScript exporter (dynamo=False) handles every torchvision classifier and detector;
        # the dynamo exporter fails on detectors, so one exporter serves both tasks.
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    return path


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over our calibration split."""

    def __init__(self, batches):
        self._batches = iter(batches)

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}

    def rewind(self):  # pragma: no cover - only used by some calibrators
        pass


@dataclass(frozen=True)
class OnnxForm:
    """The 8-bit form a model is quantized to, and why."""

    activation_type: str  # QUInt8 (U8S8) or QInt8 (S8S8) with QInt8 weights
    quant_format: str  # QDQ or QOperator
    reason: str
    cpu: str = ""
    timings_ms: dict = field(default_factory=dict)  # candidate -> {batch: p50 ms}, when tuned

    @property
    def name(self) -> str:
        return f"{'U8S8' if self.activation_type == 'QUInt8' else 'S8S8'} {self.quant_format}"

    def as_dict(self) -> dict:
        return {"form": self.name, **dataclasses.asdict(self)}


# Measured on this project's machines (bench/, platform-facts): ONNX Runtime 1.32 on x86 runs U8S8 Q/DQ
# with integer kernels and S8S8 Q/DQ slower than FP32 (0.29x/0.51x at batch 1/32 on AVX-512 VNNI,
# 0.23x/0.55x on AVX2), so signed activations are never chosen on x86.
_X86_WHY = {
    "amx": "AMX-INT8 (and VNNI) take unsigned 8-bit activations times signed 8-bit weights (U8S8)",
    "vnni": "VNNI's 8-bit dot product (vpdpbusd) takes unsigned activations times signed weights (U8S8) "
            "without saturation",
    "avx2": "without VNNI the AVX2 8-bit kernels (vpmaddubsw) take unsigned activations times signed weights "
            "(U8S8); their 16-bit intermediate sums can saturate, per_channel weights limit the loss",
    "none": "without AVX2 ONNX Runtime's 8-bit kernels are SSE4.1 ones taking U8S8; gains are small",
}


def choose_form(features: CpuFeatures, activation_type: str = AUTO, quant_format: str = AUTO) -> OnnxForm:
    """The form for a CPU with ``features``; an explicit ``activation_type`` / ``quant_format`` is kept."""
    reasons = []
    if activation_type == AUTO:
        if features.x86:
            level = ("amx" if features.amx_int8 else "vnni" if features.vnni else "avx2" if features.avx2
                     else "none")
            activation_type = "QUInt8"
            reasons.append(f"U8S8: {_X86_WHY[level]}; S8S8 Q/DQ runs slower than FP32 in ONNX Runtime on x86 "
                           "(measured 0.3-0.5x)")
        else:
            activation_type = "QInt8"
            reasons.append(f"S8S8: on {features.machine} ONNX Runtime's 8-bit kernels take signed activations "
                           f"natively{' (dot-product instructions present)' if features.arm_dot else ''}")
    else:
        reasons.append(f"activation_type {activation_type} as set")
    if quant_format == AUTO:
        quant_format = "QDQ"
        reasons.append("QDQ: ONNX Runtime fuses each DequantizeLinear-op-QuantizeLinear group into the same "
                       "integer kernel a QOperator graph names, and QDQ also runs on other execution providers")
    else:
        reasons.append(f"quant_format {quant_format} as set")
    return OnnxForm(activation_type, quant_format, "; ".join(reasons), features.summary())


def _candidates(config: OnnxPTQConfig, first: OnnxForm) -> list[tuple[str, str]]:
    activations = ["QUInt8", "QInt8"] if config.activation_type == AUTO else [config.activation_type]
    formats = ["QDQ", "QOperator"] if config.quant_format == AUTO else [config.quant_format]
    pairs = [(a, f) for a in activations for f in formats]
    return sorted(pairs, key=lambda pair: pair != (first.activation_type, first.quant_format))


def _time_session(path: Path, batch, *, budget_s: float, iterations: int = 20) -> float:
    import numpy as np
    import onnxruntime as ort

    from visioncompress.benchmark.runners import default_threads

    options = ort.SessionOptions()
    options.intra_op_num_threads = default_threads(0)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: batch}
    session.run(None, feed)
    times, deadline = [], time.perf_counter() + budget_s
    while len(times) < iterations and (len(times) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000.0)
    return round(float(np.median(times)), 3)


def tune_form(fp32_path: Path, calibration, config: OnnxPTQConfig, features: CpuFeatures, *,
              budget_s: float = 1.5) -> OnnxForm:
    """Quantize every candidate form (on a few calibration batches) and keep the fastest on this node.

    Each candidate is timed at batch 1 and at the calibration batch size for at most ``budget_s`` each;
    a candidate's score is its mean latency relative to the best candidate at each batch size.
    """
    import numpy as np

    first = choose_form(features, config.activation_type, config.quant_format)
    pairs = _candidates(config, first)
    sample = np.concatenate(calibration)[: max(len(calibration[0]), 1)]
    shapes = sorted({1, len(sample)})
    timings: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for activation, fmt in pairs:
            trial = dataclasses.replace(config, activation_type=activation, quant_format=fmt)
            path = Path(tmp) / f"{activation}-{fmt}.onnx"
            _quantize_static(fp32_path, path, calibration[:2], trial)
            name = OnnxForm(activation, fmt, "").name
            timings[name] = {b: _time_session(path, sample[:b], budget_s=budget_s) for b in shapes}
    best = {b: min(t[b] for t in timings.values()) for b in shapes}
    score = {name: sum(t[b] / best[b] for b in shapes) / len(shapes) for name, t in timings.items()}
    winner = min(pairs, key=lambda pair: score[OnnxForm(*pair, "").name])
    chosen = OnnxForm(*winner, "").name
    table = ", ".join(f"{n} {'/'.join(f'{t[b]:.2f}' for b in shapes)} ms" for n, t in timings.items())
    reason = (f"{chosen}: fastest of the candidates timed on this node at batch {'/'.join(map(str, shapes))} "
              f"({table}); from the CPU's features alone: {first.name} ({first.reason})")
    return OnnxForm(winner[0], winner[1], reason, features.summary(), timings)


def resolve_form(fp32_path: Path, calibration, config: OnnxPTQConfig,
                 features: CpuFeatures | None = None) -> tuple[OnnxPTQConfig, OnnxForm | None]:
    """``config`` with ``auto`` replaced by the chosen form (and that form), or ``config`` unchanged."""
    if AUTO not in (config.activation_type, config.quant_format):
        return config, None
    features = features or cpu_features()
    form = (tune_form(fp32_path, calibration, config, features) if config.tune
            else choose_form(features, config.activation_type, config.quant_format))
    log.info("INT8 form for this node: %s (%s)", form.name, form.reason)
    return dataclasses.replace(config, activation_type=form.activation_type, quant_format=form.quant_format), form


def _quantize_static(fp32_path: Path, int8_path: Path, calibration, config: OnnxPTQConfig, *,
                     exclude=None) -> list[str]:
    """``exclude(prepared_path) -> node names`` that stay in floating point (a detector's post-processing);
    returns those names."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    config, form = resolve_form(fp32_path, calibration, config)
    prepared = fp32_path.with_name(f"prepared-{int8_path.stem}.onnx")
    quant_pre_process(str(fp32_path), str(prepared))
    reader = _CalibrationReader(calibration)
    excluded = list(exclude(prepared)) if exclude else []
    extra = {}
    if config.activation_type in {"QInt16", "QUInt16"} or config.weight_type in {"QInt16", "QUInt16"}:
        extra["UseQDQContribOps"] = True  # 16-bit Q/DQ needs the com.microsoft domain below opset 21
    quantize_static(
        str(prepared), str(int8_path), reader,
        quant_format=getattr(QuantFormat, config.quant_format),
        per_channel=config.per_channel,
        activation_type=getattr(QuantType, config.activation_type),
        weight_type=getattr(QuantType, config.weight_type),
        calibrate_method=getattr(CalibrationMethod, config.calibrate_method),
        nodes_to_exclude=excluded,
        extra_options=extra,
    )
    prepared.unlink(missing_ok=True)
    return excluded


def quantize_onnx(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, output_dir: str | os.PathLike,
                  config: OnnxPTQConfig) -> ModelMetadata:
    import onnx
    import torch

    model, parent, dataset = load_inputs(model_dir, dataset_dir)
    example = torch.from_numpy(dataset.example_input(1))
    calibration = calibration_arrays(dataset, config.batch_size)
    with tempfile.TemporaryDirectory() as tmp, staged_output(output_dir) as scratch:
        fp32 = export_onnx(model, example, Path(tmp) / "fp32.onnx")
        resolved, form = resolve_form(fp32, calibration, config)
        log.info("ONNX PTQ format=%s activations=%s weights=%s per_channel=%s on %d calibration batches",
                 resolved.quant_format, resolved.activation_type, resolved.weight_type, resolved.per_channel,
                 len(calibration))
        metadata = derived_metadata(parent, model_dir, stage="quantize_onnx",
                                    precision=_precision(resolved), config=resolved, fmt="onnx")
        if form is not None:
            metadata.params["INT8_FORM"] = {**form.as_dict(), "requested": {
                "activation_type": config.activation_type, "quant_format": config.quant_format, "TUNE": config.tune}}
        target = scratch / metadata.file_name
        _quantize_static(fp32, target, calibration, resolved)
        onnx.checker.check_model(str(target))
        write_model_metadata(scratch, metadata)
    log.info("INT8 ONNX model written to %s (load with %s)", output_dir, metadata.load_call)
    return metadata


def _precision(config: OnnxPTQConfig) -> str:
    if {config.activation_type, config.weight_type} <= {"QInt8", "QUInt8", AUTO}:
        return "int8"
    bits = {"QInt8": "int8", "QUInt8": "uint8", "QInt16": "int16", "QUInt16": "uint16", "QFLOAT8E4M3FN": "fp8"}
    return f"{bits[config.activation_type]}/{bits[config.weight_type]}"
