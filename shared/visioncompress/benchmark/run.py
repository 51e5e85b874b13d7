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


def _measure(runner, dataset, config: BenchmarkConfig) -> tuple[float, int, dict[int, dict]]:
    accuracy, n_images = top1(runner, dataset, limit=config.max_test_samples)
    timings = {}
    for batch_size in config.batch_sizes:
        timings[batch_size] = latency(runner, sample_batch(dataset, batch_size), warmup=config.warmup,
                                      iterations=config.iterations, time_budget_s=config.time_budget_s)
    return accuracy, n_images, timings


def _rows(label: str, backend: str, metadata, size_mb: float, accuracy: float, n_images: int,
          timings: dict[int, dict], threads: int) -> list[dict]:
    return [{
        "variant": label, "backend": backend, "format": metadata.format, "precision": metadata.precision,
        "stage": metadata.stage, "architecture": metadata.architecture, "batch_size": batch_size,
        **timing, "top1": round(accuracy, 3), "test_images": n_images, "size_mb": size_mb, "threads": threads,
        "cpu_quota": cpu_quota(),
    } for batch_size, timing in timings.items()]


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


def benchmark(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, config: BenchmarkConfig, *,
              variant: str = "", fp32_runtimes: tuple[str, ...] = (), post=None) -> list[dict]:
    """Measure one model artifact; an FP32 torch model can also be measured in ``fp32_runtimes``
    (a detector as its end-to-end export, with ``post``: DetectionPostConfig)."""
    model_dir = Path(model_dir)
    metadata = read_model_metadata(model_dir)
    if metadata.task == "detection":
        return _benchmark_detector(model_dir, dataset_dir, config, variant, fp32_runtimes, post)
    dataset = load_dataset(dataset_dir)
    threads = default_threads(config.threads)
    label = variant or variant_name(metadata)
    log.info("benchmarking %s (%s, %s) with %d threads, batch sizes %s", label, metadata.format,
             metadata.precision, threads, config.batch_sizes)
    runner = runner_for(metadata, model_dir / metadata.file_name, threads)
    accuracy, n_images, timings = _measure(runner, dataset, config)
    rows = _rows(label, metadata.backend, metadata, _size_mb(model_dir), accuracy, n_images, timings, threads)
    log.info("%s/%s: top-1 %.2f%%, p50 %s", label, metadata.backend, accuracy,
             {b: t["p50_ms"] for b, t in timings.items()})
    extra = [r for r in fp32_runtimes if r != metadata.backend]
    if extra and metadata.format == "torch-module":
        with tempfile.TemporaryDirectory() as tmp:
            for backend, converted, path in _fp32_conversions(model_dir, dataset, extra, Path(tmp)):
                runner = runner_for(converted, path, threads)
                accuracy, n_images, timings = _measure(runner, dataset, config)
                size = round(sum(p.stat().st_size for p in path.parent.iterdir()) / 2**20, 3)
                rows += _rows(label, backend, converted, size, accuracy, n_images, timings, threads)
                log.info("%s/%s: top-1 %.2f%%, p50 %s", label, backend, accuracy,
                         {b: t["p50_ms"] for b, t in timings.items()})
    return rows


def _benchmark_detector(model_dir: Path, dataset_dir, config: BenchmarkConfig, variant: str,
                        fp32_runtimes, post=None) -> list[dict]:
    from visioncompress.detection.benchmark import benchmark_detector, fp32_exported_artifacts

    metadata = read_model_metadata(model_dir)
    rows = benchmark_detector(model_dir, dataset_dir, config, variant=variant)
    extra = [r for r in fp32_runtimes if r != metadata.backend]
    if extra and metadata.format == "torch-module":
        from visioncompress.detection.heads import family
        from visioncompress.models import load_torch_module

        if family(load_torch_module(model_dir)) == "two-stage":
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
