"""Detection benchmark: mAP (pycocotools) on the test split, end-to-end latency, size.

An exported detector is measured in its own runtime alone, image batch in, detections out (no PyTorch in the
timed loop); mAP is computed from those same detections.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from visioncompress.benchmark.measure import latency
from visioncompress.benchmark.runners import default_threads
from visioncompress.resources import cpu_quota
from visioncompress.config import BenchmarkConfig
from visioncompress.detection.data import DetectionData, load_detection_dataset
from visioncompress.detection.metrics import coco_map
from visioncompress.detection.runners import detection_runner
from visioncompress.log import get_logger

log = get_logger("detection.benchmark")


def measure_map(runner, data: DetectionData, *, split: str = "test", batch_size: int = 16,
                limit: int = 0) -> tuple[dict, int]:
    detections = []
    for images, _ in data.batches(split, batch_size, limit=limit):
        detections.extend(runner.predict(images.numpy()))
    truth = data.coco(split)
    if limit:
        truth = {**truth, "images": truth["images"][:limit],
                 "annotations": [a for a in truth["annotations"] if a["image_id"] <= limit]}
    return coco_map(truth, detections), len(detections)


def _sample(data: DetectionData, batch_size: int) -> np.ndarray:
    index = np.arange(batch_size) % data.size("test")  # decodes only the images it uses
    images = np.stack([data.item("test", int(i))[0].numpy() for i in index])
    return np.ascontiguousarray(images, dtype=np.float32) / 255.0


def benchmark_detector(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, config: BenchmarkConfig, *,
                       variant: str = "", size_mb: float = 0.0) -> list[dict]:
    from visioncompress.benchmark.run import _size_mb, variant_name

    metadata, runner = detection_runner(model_dir, config.threads)
    data = load_detection_dataset(dataset_dir)
    label = variant or variant_name(metadata)
    threads = default_threads(config.threads)
    scores, n_images = measure_map(runner, data, limit=config.max_test_samples)
    size = size_mb or (round((Path(model_dir) / metadata.file_name).stat().st_size / 2**20, 3)
                       if metadata.format == "mm-module" else _size_mb(Path(model_dir)))  # not its state dict twice
    rows = []
    for batch_size in config.batch_sizes:
        timing = latency(runner, _sample(data, batch_size), warmup=config.warmup, iterations=config.iterations,
                         time_budget_s=config.time_budget_s)
        rows.append({"variant": label, "backend": metadata.backend, "format": metadata.format,
                     "precision": metadata.precision, "stage": metadata.stage, "architecture": metadata.architecture,
                     "task": "detection", "batch_size": batch_size, **timing, **scores, "test_images": n_images,
                     "size_mb": size, "threads": threads, "cpu_quota": cpu_quota()})
    log.info("%s/%s: mAP %.2f mAP50 %.2f, p50 %s", label, metadata.backend, scores["mAP"], scores["mAP50"],
             {r["batch_size"]: r["p50_ms"] for r in rows})
    return rows


def fp32_exported_artifacts(model_dir: Path, runtimes, workdir: Path, post=None):
    """Yield FP32 end-to-end exports of a torch or OpenMMLab (mm-module) detector for ONNX Runtime / OpenVINO, as
    artifact dirs."""
    from visioncompress.artifacts import write_model_metadata
    from visioncompress.detection.artifacts import export_info, exported_metadata
    from visioncompress.detection.export import export_end_to_end, resolve_settings
    from visioncompress.models import load_torch_module

    from visioncompress.artifacts import read_model_metadata

    metadata = read_model_metadata(model_dir)
    if metadata.format == "mm-module":  # an OpenMMLab detector: its own end-to-end export (detection.mm.export)
        from visioncompress.detection.mm.export import export_mm, resolve_settings as mm_settings
        from visioncompress.detection.mm.model import load_model

        wrapper = load_model(Path(model_dir) / metadata.file_name)
        settings = mm_settings(wrapper, post)

        def export(path):
            return export_mm(wrapper, path, settings)
    else:
        detector = load_torch_module(model_dir).eval()
        settings = resolve_settings(detector, post)

        def export(path):
            return export_end_to_end(detector, metadata.input_size, settings, path)
    for runtime in runtimes:
        fmt = {"onnxruntime": "onnx", "openvino": "openvino-ir"}.get(runtime)
        if fmt is None:
            continue
        directory = workdir / runtime
        directory.mkdir()
        converted = exported_metadata(metadata, model_dir, stage=metadata.stage, precision="fp32", fmt=fmt,
                                      params=metadata.params, info=export_info(settings, []))
        onnx_path = export(directory / "model.onnx")
        if fmt == "openvino-ir":
            import openvino as ov

            ov.save_model(ov.convert_model(str(onnx_path)), str(directory / "model.xml"), compress_to_fp16=False)
            onnx_path.unlink()
        write_model_metadata(directory, converted)
        yield directory
