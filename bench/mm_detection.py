"""OpenMMLab detector rows: FP32 against INT8, each the end-to-end graph (image batch in, detections out, NMS
inside: ``detection.mm.export``) in its own runtime, side by side in one run.

    /work/main/.venv-mm/bin/python -m bench.mm_detection [--config mmdet::yolox/...] [--insize 320]
        [--train-insize 128] [--train-images 600] [--test-images 100] [--iters 600] [--out bench/results_mm_detection]

Needs the OpenMMLab environment (requirements-mm.txt). Data: the project's offline detection set
(``write_synthetic_coco``: Fashion-MNIST items on photographs) at ``--insize``; the detector is trained here
from scratch (no downloads) with the mm Runner, then exported and quantized:

* fp32 / onnxruntime and fp32 / openvino: the exported FP32 graph;
* int8-u8s8 / onnxruntime: ``quantize_mm_onnx`` (QDQ, U8 activations, S8 per-channel weights: the fast form on
  x86 CPUs), post-processing and the detection head in FP32 (see ``quantize_mm_onnx``);
* int8 / openvino: ``quantize_mm_openvino`` (NNCF PTQ), post-processing in FP32.

Each at batch 1 and 8: p50 / p90 latency of the whole graph, images/s, mAP (pycocotools on the test split,
the same images for every row), file size. Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_CONFIG = "mmdet::yolox/yolox_tiny_8xb8-300e_coco.py"  # mmyolo YOLOX trains only with its batch augments


def train_detector(config: str, data_root, work_dir, *, insize: int, iters: int, batch_size: int = 8,
                   lr: float | None = None):
    """A detector of ``config`` trained from scratch on the COCO folder ``data_root`` (the mm Runner of
    ``detection.mm.runner``), as an ``MMDetector``."""
    from visioncompress.detection.mm.configs import coco_info, load_model_config
    from visioncompress.detection.mm.model import MMDetector
    from visioncompress.detection.mm.runner import TrainSettings, build_model, make_runner, total_iters, train

    info = coco_info(data_root)
    cfg = load_model_config(config, "config", len(info.classes))
    model = build_model(cfg.model)
    _, per_epoch = total_iters(info, batch_size, 1, None)
    settings = TrainSettings(lr=lr if lr is not None else cfg.lr)
    runner = make_runner(model, info, cfg.family, Path(work_dir) / "mm", settings=settings,
                         batch_size=batch_size, insize=insize, iters=iters, per_epoch=per_epoch)
    seconds = train(runner)
    model.eval()
    return MMDetector(model, info.classes, insize, cfg.family, cfg.model), seconds


def _ort(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda batch: session.run(None, {"input": batch})


def _openvino(path: Path, threads: int):
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {
        "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()

    def run(batch):
        result = request.infer({0: batch})
        return [result[i].copy() for i in range(4)]
    return run


def _latency(run, batch: np.ndarray, warmup: int, iterations: int, budget_s: float) -> tuple[float, float]:
    for _ in range(warmup):
        run(batch)
    times, start = [], time.perf_counter()
    for _ in range(iterations):
        t = time.perf_counter()
        run(batch)
        times.append((time.perf_counter() - t) * 1000)
        if time.perf_counter() - start > budget_s and len(times) >= 3:
            break
    return float(np.percentile(times, 50)), float(np.percentile(times, 90))


def _size_mb(path: Path) -> float:
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return sum(f.stat().st_size for f in files if f.exists()) / 1e6


def run(args) -> dict:
    import torch

    from visioncompress.config import OnnxPTQConfig, OpenVinoPTQConfig
    from visioncompress.detection.mm.evaluate import evaluate_mm
    from visioncompress.detection.mm.export import (
        CocoImages, coco_map_exported, default_settings, export_mm, quantize_mm_onnx, quantize_mm_openvino,
    )
    from visioncompress.detection.synthetic import write_synthetic_coco

    torch.manual_seed(0)
    threads = args.threads or len(os.sched_getaffinity(0))
    work = Path(args.work or tempfile.mkdtemp(prefix="mm-bench-"))
    started = time.perf_counter()
    data = work / "coco"
    if not (data / "annotations" / "instances_test.json").is_file():
        write_synthetic_coco(data, train_images=args.train_images, test_images=args.test_images,
                             image_size=args.insize)
    wrapper, sec_per_iter = train_detector(args.config, data, work / "train", insize=args.train_insize or args.insize,
                                           iters=args.iters, batch_size=args.train_batch)
    wrapper.insize = args.insize  # a convolutional detector runs at any size: trained small, measured at insize
    settings = default_settings(wrapper)
    eager_map = evaluate_mm(wrapper, data, "test")["mAP"] * 100
    models = work / "models"
    models.mkdir(exist_ok=True)
    fp32 = export_mm(wrapper, models / "fp32.onnx", settings)
    import openvino as ov

    ov.save_model(ov.convert_model(str(fp32)), str(models / "fp32.xml"), compress_to_fp16=False)
    quantize_mm_onnx(wrapper, data, models / "int8-u8s8.onnx",
                     OnnxPTQConfig(batch_size=8, activation_type="QuantType.QUInt8", per_channel=True,
                                   quant_format="QDQ", weight_type="QuantType.QInt8"), settings, limit=args.calibration)
    quantize_mm_openvino(wrapper, data, models / "int8.xml",
                         OpenVinoPTQConfig(transformer=False, subset_size=args.calibration), settings)
    images = CocoImages(data, "test", args.insize)
    variants = [("fp32", "onnxruntime", models / "fp32.onnx", _ort), ("int8-u8s8", "onnxruntime",
                models / "int8-u8s8.onnx", _ort), ("fp32", "openvino", models / "fp32.xml", _openvino),
                ("int8", "openvino", models / "int8.xml", _openvino)]
    rows, maps = [], {}
    for variant, backend, path, make in variants:
        runner = make(path, threads)
        maps[(variant, backend)] = coco_map_exported(runner, images, batch_size=8)
        for batch_size in args.batches:
            batch = np.ascontiguousarray(np.resize(images.images, (batch_size, *images.images.shape[1:])))
            p50, p90 = _latency(runner, batch, args.warmup, args.iterations, args.budget)
            rows.append(dict(variant=variant, backend=backend, batch=batch_size, p50_ms=round(p50, 2),
                             p90_ms=round(p90, 2), img_s=round(batch_size * 1000 / p50, 1),
                             mAP=maps[(variant, backend)], size_mb=round(_size_mb(path), 2)))
    for row in rows:
        base = next(r for r in rows if r["backend"] == row["backend"] and r["batch"] == row["batch"]
                    and r["variant"] == "fp32")
        row["delta_mAP"] = round(row["mAP"] - base["mAP"], 2)
        row["speedup"] = round(base["p50_ms"] / row["p50_ms"], 2)
    return dict(config=args.config, insize=args.insize, train_insize=args.train_insize or args.insize,
                train_images=args.train_images,
                test_images=args.test_images, iters=args.iters, train_seconds_per_iter=round(sec_per_iter, 3),
                eager_mm_mAP=round(eager_map, 2), threads=threads, post_processing=settings.as_dict(),
                cpu=platform.processor() or platform.machine(), python=platform.python_version(),
                wall_s=round(time.perf_counter() - started, 1), rows=rows)


def markdown(result: dict) -> str:
    lines = [f"# visioncompress bench: OpenMMLab detector end to end ({result['config']}, {result['insize']} px)", "",
             f"Trained here from scratch at {result['train_insize']} px for {result['iters']} iterations on "
             f"{result['train_images']} images of the offline detection set, measured at {result['insize']} px; "
             f"mAP on {result['test_images']} test images (pycocotools, the same images for every row). "
             f"mm's own eager predict: mAP {result['eager_mm_mAP']:.2f}. Latency is the whole graph "
             f"(image batch to padded detections, NMS inside) with {result['threads']} thread(s); speed-up and "
             "Δ mAP are against FP32 in the same runtime at the same batch size. Post-processing: "
             f"{result['post_processing']}. Wall time {result['wall_s']} s.", "",
             "| variant | backend | batch | p50 ms | p90 ms | img/s | mAP % | Δ mAP | speed-up | size MB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(result["rows"], key=lambda r: (r["batch"], r["backend"], r["variant"] != "fp32")):
        lines.append(f"| {r['variant']} | {r['backend']} | {r['batch']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
                     f"{r['img_s']:g} | {r['mAP']:.2f} | {r['delta_mAP']:+.2f} | {r['speedup']:.2f}× | "
                     f"{r['size_mb']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--insize", type=int, default=320)
    parser.add_argument("--train-images", type=int, default=600)
    parser.add_argument("--test-images", type=int, default=100)
    parser.add_argument("--train-insize", type=int, default=128,
                        help="training resolution (0 = --insize; training at 320 px is hours on 2 cores)")
    parser.add_argument("--iters", type=int, default=600)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--calibration", type=int, default=64)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of timing per row at most")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--work", default="", help="working folder (kept; default: a new temporary one)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_mm_detection")))
    args = parser.parse_args(argv)
    result = run(args)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
