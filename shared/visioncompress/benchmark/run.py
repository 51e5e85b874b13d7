"""Benchmark stage: accuracy, latency at several batch sizes, and size, per model artifact."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from visioncompress.artifacts import read_model_metadata
from visioncompress.benchmark.measure import latency, sample_batch, top1
from visioncompress.benchmark.runners import default_threads, runner_for
from visioncompress.resources import cpu_quota
from visioncompress.config import BenchmarkConfig
from visioncompress.data import load_dataset
from visioncompress.log import get_logger

log = get_logger("benchmark")

FP32_RUNTIMES = ("torch", "onnxruntime", "openvino")


def _size_mb(model_dir: Path) -> float:
    skip = {"model.json", "history.json"}
    return round(sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file() and p.name not in skip) / 2**20, 3)


def variant_name(metadata) -> str:
    if metadata.stage == "finetune":
        return "fp32"
    return metadata.precision.split("/")[0] if metadata.precision.startswith("int") else metadata.precision


FLOAT_PRECISIONS = ("fp32", "bf16", "fp16")
EXECUTION = {"torch-module": "eager", "torchscript": "TorchScript", "onnx": "ONNX Runtime CPU",
             "openvino-ir": "OpenVINO CPU", "tensorrt-engine": "TensorRT"}
TORCHSCRIPT = "TorchScript trace+freeze"


def _measure(runner, dataset, config: BenchmarkConfig) -> tuple[float, int, dict[int, dict]]:
    accuracy, n_images = top1(runner, dataset, limit=config.max_test_samples)
    timings = {}
    for batch_size in config.batch_sizes:
        timings[batch_size] = latency(runner, sample_batch(dataset, batch_size), warmup=config.warmup,
                                      iterations=config.iterations, time_budget_s=config.time_budget_s)
    return accuracy, n_images, timings


def _rows(label: str, backend: str, metadata, size_mb: float, accuracy: float, n_images: int,
          timings: dict[int, dict], threads: int, *, execution: str = "", precision: str = "") -> list[dict]:
    form = metadata.params.get("INT8_FORM") if isinstance(metadata.params, dict) else None
    extra = {"int8_form": form["form"], "int8_form_reason": form["reason"]} if form else {}
    ladder = metadata.metrics.get("ladder") if isinstance(metadata.metrics, dict) else None
    if isinstance(ladder, dict):  # the accuracy ladder's rungs travel with the rows to the report
        extra["ladder"] = ladder
    return [{
        "variant": label, "backend": backend, "format": metadata.format,
        "precision": precision or metadata.precision, "execution": execution or EXECUTION.get(metadata.format, ""),
        "stage": metadata.stage, "architecture": metadata.architecture, "insize": metadata.input_size,
        "batch_size": batch_size, **timing, "top1": round(accuracy, 3), "test_images": n_images,
        "size_mb": size_mb, "threads": threads, "cpu_quota": cpu_quota(), **extra,
    } for batch_size, timing in timings.items()]


def _float_label(label: str, precision: str) -> str:
    """fp32 -> bf16; pruned -> pruned-bf16."""
    if precision == "fp32":
        return label
    return precision if label == "fp32" else f"{label}-{precision}"


def _torch_variants(module, example, label: str, *, eager: bool, bf16: bool):
    """(label, runner-args, execution, precision) for a torch-module: TorchScript-frozen first (the form the
    PyTorch INT8 artifact is measured in), eager when asked, BF16 TorchScript where the CPU has BF16."""
    import torch

    from visioncompress.benchmark.runners import torchscript_frozen

    try:
        yield label, (torchscript_frozen(module, example), None), TORCHSCRIPT, "fp32"
    except Exception as error:  # noqa: BLE001 - a model TorchScript cannot trace is measured eager
        log.warning("TorchScript trace of %s failed (%s); measuring eager only", label, error)
        yield label, (module, None), f"eager (TorchScript trace failed: {type(error).__name__})", "fp32"
        return
    if eager:
        yield f"{label}-eager", (module, None), "eager", "fp32"
    if bf16:
        try:
            yield _float_label(label, "bf16"), (torchscript_frozen(module, example, torch.bfloat16),
                                                 torch.bfloat16), f"{TORCHSCRIPT}, bf16 weights", "bf16"
        except Exception as error:  # noqa: BLE001
            log.warning("BF16 TorchScript of %s failed (%s); no torch bf16 row", label, error)


def _measure_torch_module(model_dir: Path, metadata, dataset, config, label, threads, *, eager: bool) -> list[dict]:
    import torch

    from visioncompress.benchmark.runners import TorchRunner
    from visioncompress.cpu import cpu_features
    from visioncompress.models import load_torch_module

    module = load_torch_module(model_dir)
    example = torch.from_numpy(dataset.example_input(1))
    rows: list[dict] = []
    for name, (compiled, dtype), execution, precision in _torch_variants(
            module, example, label, eager=eager, bf16=eager and cpu_features().bf16):
        runner = TorchRunner(compiled, threads, dtype)
        accuracy, n_images, timings = _measure(runner, dataset, config)
        rows += _rows(name, "torch", metadata, _size_mb(model_dir), accuracy, n_images, timings, threads,
                      execution=execution, precision=precision)
        _log_rows(rows[-len(timings):])
    return rows


def _log_rows(rows: list[dict]) -> None:
    first = rows[0]
    log.info("%s/%s (%s, %s): top-1 %.2f%%, p50 %s", first["variant"], first["backend"], first["execution"],
             first["precision"], first["top1"], {r["batch_size"]: r["p50_ms"] for r in rows})


def _fp32_conversions(model_dir: Path, dataset, runtimes, workdir: Path):
    """Yield (backend, metadata-like, model path) for FP32 copies of a torch model in other runtimes."""
    import torch

    from visioncompress.models import load_torch_module
    from visioncompress.quantize.onnx import export_onnx
    from visioncompress.quantize.openvino import convert_to_openvino

    metadata = read_model_metadata(model_dir)
    module = load_torch_module(model_dir)
    example = torch.from_numpy(dataset.example_input(1))
    if "onnxruntime" in runtimes:
        (workdir / "onnxruntime").mkdir()
        path = export_onnx(module, example, workdir / "onnxruntime" / "fp32.onnx")
        yield "onnxruntime", metadata.derive(format="onnx"), path
    if "openvino" in runtimes:
        import openvino as ov

        (workdir / "openvino").mkdir()
        path = workdir / "openvino" / "fp32.xml"
        ov.save_model(convert_to_openvino(module, example), str(path), compress_to_fp16=False)
        yield "openvino", metadata.derive(format="openvino-ir"), path


def _measure_file(label, backend, metadata, path: Path, size_mb, dataset, config, threads) -> list[dict]:
    """One model file in its runtime; an FP32 OpenVINO IR once per float precision the CPU runs natively
    (FP32 forced with INFERENCE_PRECISION_HINT=f32, BF16/FP16 as variants of their own)."""
    from visioncompress.benchmark.runners import openvino_float_precisions

    if metadata.format == "openvino-ir" and metadata.precision in FLOAT_PRECISIONS:
        precisions = openvino_float_precisions()
    else:
        precisions = [None]
    rows: list[dict] = []
    for precision in precisions:
        runner = runner_for(metadata, path, threads, precision=precision)
        accuracy, n_images, timings = _measure(runner, dataset, config)
        runtime_precision = getattr(runner, "inference_precision", "")
        execution = EXECUTION.get(metadata.format, metadata.format)
        if runtime_precision:
            execution += f", INFERENCE_PRECISION_HINT={runtime_precision}" + ("" if precision else " (default)")
        rows += _rows(_float_label(label, precision) if precision else label, backend, metadata, size_mb,
                      accuracy, n_images, timings, threads, execution=execution,
                      precision=precision or metadata.precision)
        _log_rows(rows[-len(timings):])
    return rows


def benchmark(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, config: BenchmarkConfig, *,
              variant: str = "", fp32_runtimes: tuple[str, ...] = (), post=None) -> list[dict]:
    """Measure one model artifact; a float torch model can also be measured in ``fp32_runtimes``.

    A torch-module is measured TorchScript-frozen (as the PyTorch INT8 artifact is); when ``torch`` is among
    ``fp32_runtimes`` also eager and, where the CPU has BF16, in BF16. In OpenVINO a float model is measured in
    every float precision the CPU runs natively, FP32 forced (OpenVINO's default is BF16 on BF16 CPUs).
    A detector is measured as its end-to-end export (``post``: DetectionPostConfig).
    """
    model_dir = Path(model_dir)
    metadata = read_model_metadata(model_dir)
    if metadata.task == "detection":
        return _benchmark_detector(model_dir, dataset_dir, config, variant, fp32_runtimes, post)
    dataset = load_dataset(dataset_dir)
    threads = default_threads(config.threads)
    label = variant or variant_name(metadata)
    log.info("benchmarking %s (%s, %s) with %d threads, batch sizes %s", label, metadata.format,
             metadata.precision, threads, config.batch_sizes)
    if metadata.format == "torch-module":
        rows = _measure_torch_module(model_dir, metadata, dataset, config, label, threads,
                                     eager="torch" in fp32_runtimes)
    else:
        rows = _measure_file(label, metadata.backend, metadata, model_dir / metadata.file_name,
                             _size_mb(model_dir), dataset, config, threads)
    extra = [r for r in fp32_runtimes if r != metadata.backend]
    if extra and metadata.format == "torch-module":
        with tempfile.TemporaryDirectory() as tmp:
            for backend, converted, path in _fp32_conversions(model_dir, dataset, extra, Path(tmp)):
                size = round(sum(p.stat().st_size for p in path.parent.iterdir()) / 2**20, 3)
                rows += _measure_file(label, backend, converted, path, size, dataset, config, threads)
    return rows


def _benchmark_detector(model_dir: Path, dataset_dir, config: BenchmarkConfig, variant: str,
                        fp32_runtimes, post=None) -> list[dict]:
    from visioncompress.detection.benchmark import benchmark_detector, fp32_exported_artifacts

    metadata = read_model_metadata(model_dir)
    rows = benchmark_detector(model_dir, dataset_dir, config, variant=variant)
    extra = [r for r in fp32_runtimes if r != metadata.backend]
    if extra and metadata.format in ("torch-module", "mm-module"):
        from visioncompress.detection.heads import family
        from visioncompress.models import load_torch_module

        if metadata.format == "torch-module" and family(load_torch_module(model_dir)) == "two-stage":
            return rows
        with tempfile.TemporaryDirectory() as tmp:
            for converted in fp32_exported_artifacts(model_dir, extra, Path(tmp), post):
                rows += benchmark_detector(converted, dataset_dir, config, variant=variant or variant_name(metadata))
    return rows


def write_results(rows: list[dict], path: str | os.PathLike) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(rows, indent=2) + "\n")


def read_results(paths) -> list[dict]:
    rows: list[dict] = []
    for path in paths:
        rows += json.loads(Path(path).read_text())
    return rows
