"""OpenMMLab detector rows of `make bench`: one detector (MMDetection's YOLOX-tiny, random weights, trained here)
FP32 against INT8, GroupFisher-pruned and PKD-distilled, each measured as the deployed end-to-end graph (image
batch in, detections out, NMS inside: ``detection.mm.export``) in its own runtime, side by side in one run.

    /work/main/.venv-mm/bin/python -m bench.mm_detection [--tiny] [--fresh] [--output bench/results_mm_detection.json]

Needs the OpenMMLab environment (requirements-mm.txt; ``make bench`` sets it up). Everything goes through the
pipeline stages, as a user's pipeline would run it: the offline detection set (Fashion-MNIST items on
photographs, ``fashion-mnist-detection``) prepared at ``insize``; the FP32 detector fine-tuned by the finetune
stage (PLATFORM=mmdet); INT8 by the detection PTQ stages (ONNX Runtime U8S8 per-channel QDQ with the head and
post-processing in FP32, OpenVINO NNCF PTQ); pruning by ``prune_mm_stage`` (GroupFisher in MMRazor, NORM_TYPE
flops, one channel every INTERVAL iterations until TARGET_FLOP_RATIO); distillation by ``distill_mm_stage``
(METHOD pkd on every neck level) with the FP32 detector as teacher and a fresh student of the same architecture
trained for the same iterations as the FP32 detector (so the FP32 rows are also the student trained alone).

Each model is measured by the project's benchmark (``visioncompress.benchmark``): mAP with pycocotools on the same
test images, p50 / p90 latency at batch 1 and 8 of the end-to-end graph in ONNX Runtime and OpenVINO (FP32 with
INFERENCE_PRECISION_HINT f32; mm's own eager predict is not measured: seconds per image here), file size, and
the model's FLOPs
(mmengine's counter at ``insize``). Artifacts are kept under bench/artifacts/mm-detection (reused unless
``--fresh``). Writes ``<output>.json`` and ``<output>.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = "mmdet::yolox/yolox_tiny_8xb8-300e_coco.py"  # mmyolo YOLOX trains only with its batch augments
MODEL, PLATFORM = "yolox_tiny_8xb8-300e_coco", "mmdet"


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


@dataclass(frozen=True)
class Sizes:
    insize: int
    train: int          # training images drawn (VAL_FRACTION of them go to the validation split)
    test: int
    calibration: int
    batch: int
    epochs: int         # FP32 detector and distilled student
    prune_batch: int
    prune_epochs: int
    interval: int
    target_flop_ratio: float
    lr: float
    measure_iterations: int
    budget_s: float


# 64 px (objects 13-32 px): YOLOX-tiny learns the set in a few hundred SGD steps of 4 images (96 px took about
# 2.3 times as long per step, more than this part's budget of about 15 minutes on 2 idle cores); the end-to-end
# graph is measured at the size it was trained at. GroupFisher removes one channel every INTERVAL iterations and
# each of its iterations costs several plain ones (Fisher bookkeeping, the exact FLOP count of the pruned copy), so
# within this budget it removes about one percent of the FLOPs (measured at 64 px: 160 pruning steps to 0.99 of
# the FLOPs, 212 s with the fine-tuning after them); real runs take thousands of steps.
REAL = Sizes(insize=64, train=240, test=100, calibration=64, batch=4, epochs=30, prune_batch=8, prune_epochs=14,
             interval=1, target_flop_ratio=0.99, lr=0.02, measure_iterations=30, budget_s=8)
TINY = Sizes(insize=64, train=16, test=8, calibration=4, batch=4, epochs=1, prune_batch=8, prune_epochs=4,
             interval=1, target_flop_ratio=0.9995, lr=0.01, measure_iterations=3, budget_s=1)


def _ensure(path: Path, build) -> Path:
    if not (path / "model.json").is_file() and not (path / "manifest.json").is_file():
        build(path)
    return path


def _gflops(model_dir: Path) -> float:
    from visioncompress.artifacts import read_model_metadata
    from visioncompress.detection.mm.model import flops_params, load_model

    metadata = read_model_metadata(model_dir)
    if "flops_after" in metadata.metrics:
        return round(metadata.metrics["flops_after"] / 1e9, 4)
    wrapper = load_model(model_dir / metadata.file_name)
    return round(flops_params(wrapper.model, metadata.input_size)[0] / 1e9, 4)


def run(root: Path, sizes: Sizes) -> tuple[list[dict], dict]:
    """Train, compress and measure; returns the rows and what each stage reported."""
    from visioncompress.artifacts import read_model_metadata
    from visioncompress.benchmark import benchmark
    from visioncompress.config import (
        BenchmarkConfig, DataConfig, DistillConfig, GroupFisherConfig, ModelConfig, OnnxPTQConfig, OpenVinoPTQConfig,
        TrainConfig,
    )
    from visioncompress.data import prepare_dataset
    from visioncompress.detection.prune import prune_detector
    from visioncompress.distill import distill
    from visioncompress.quantize import quantize
    from visioncompress.train import finetune

    data = DataConfig(source="fashion-mnist-detection", insize=sizes.insize, max_train_samples=sizes.train,
                      max_test_samples=sizes.test, calibration_samples=sizes.calibration)
    model = ModelConfig(model=MODEL, platform=PLATFORM)
    train = TrainConfig(batch_size=sizes.batch, finetune_epochs=sizes.epochs, learning_rate=sizes.lr,
                        optimizer="SGD", lr_scheduler="none", workers=0)
    measure = BenchmarkConfig(batch_size=8, extra_batch_sizes=[], warmup=3, iterations=sizes.measure_iterations,
                              time_budget_s=sizes.budget_s, max_test_samples=sizes.test)
    seconds: dict[str, float] = {}

    def timed(name, build):
        def wrapped(path):
            started = time.perf_counter()
            build(path)
            seconds[name] = round(time.perf_counter() - started, 1)
        return wrapped

    dataset = _ensure(root / f"dataset-{sizes.insize}-{sizes.train}-{sizes.test}", lambda p: prepare_dataset(data, p))
    fp32 = _ensure(root / "fp32", timed("finetune", lambda p: finetune(dataset, p, model, train)))
    int8 = [("onnx-int8-u8s8", "int8-u8s8", OnnxPTQConfig(batch_size=8, activation_type="QuantType.QUInt8",
                                                          per_channel=True, quant_format="QDQ")),
            ("openvino-int8", "int8", OpenVinoPTQConfig(transformer=False, subset_size=sizes.calibration))]
    quantized = [(label, _ensure(root / folder, timed(folder, lambda p, c=config: quantize(fp32, dataset, p, c))))
                 for folder, label, config in int8]
    prune_config = GroupFisherConfig(interval=sizes.interval, norm_type="flops", lr_ratio=0.1,
                                     target_flop_ratio=sizes.target_flop_ratio, epochs=sizes.prune_epochs)
    prune_train = dataclasses.replace(train, batch_size=sizes.prune_batch)
    pruned = _ensure(root / "pruned", timed("prune", lambda p: prune_detector(fp32, dataset, p, prune_config,
                                                                             prune_train)))
    kd = DistillConfig(teacher_model=MODEL, teacher_platform=PLATFORM, method="pkd", epochs=sizes.epochs,
                       lr=sizes.lr)
    distilled = _ensure(root / "distilled-pkd", timed("distill", lambda p: distill(
        dataset, p, model, TrainConfig(batch_size=sizes.batch, training=False, optimizer="SGD",
                                       lr_scheduler="none", workers=0), kd, teacher_dir=fp32)))
    flops = {"fp32": _gflops(fp32), "pruned": _gflops(pruned), "distilled-pkd": _gflops(distilled)}
    rows = _tag(_deployed_fp32(fp32, dataset, measure, "fp32"), flops["fp32"], sizes.insize)
    for label, path in quantized:
        rows += _tag(benchmark(path, dataset, measure, variant=label), flops["fp32"], sizes.insize)
    rows += _tag(_deployed_fp32(pruned, dataset, measure, "pruned"), flops["pruned"], sizes.insize)
    rows += _tag(_deployed_fp32(distilled, dataset, measure, "distilled-pkd"), flops["distilled-pkd"], sizes.insize)
    info = {"stage_seconds": seconds, "gflops": flops}
    for name, path in (("fp32", fp32), ("pruned", pruned), ("distilled-pkd", distilled)):
        info[name] = {k: v for k, v in read_model_metadata(path).metrics.items() if not isinstance(v, (dict, list))}
    return rows, info


def _deployed_fp32(model_dir: Path, dataset: Path, measure, label: str) -> list[dict]:
    """The benchmark's FP32 end-to-end exports of an mm-module artifact in ONNX Runtime and OpenVINO (what
    ``benchmark(..., fp32_runtimes=...)`` adds), without its row for mm's eager predict: seconds per image on
    this machine, and not a deployment form."""
    import tempfile

    from visioncompress.detection.benchmark import benchmark_detector, fp32_exported_artifacts

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for converted in fp32_exported_artifacts(model_dir, ("onnxruntime", "openvino"), Path(tmp)):
            rows += benchmark_detector(converted, dataset, measure, variant=label)
    return rows


def _tag(rows: list[dict], gflops: float, insize: int) -> list[dict]:
    for row in rows:
        row["gflops"], row["insize"] = gflops, insize
        row["execution"] = {"onnxruntime": "ONNX Runtime CPU, end-to-end graph",
                            "openvino": "OpenVINO CPU, INFERENCE_PRECISION_HINT=f32, end-to-end graph"}.get(
                                row["backend"], row["backend"])
    return rows


def markdown_summary(result: dict, sizes: Sizes) -> list[str]:
    info = result["stages"]
    fp32, pruned, kd = info["fp32"], info["pruned"], info["distilled-pkd"]
    lines = [f"# make bench: OpenMMLab detector ({PLATFORM} {MODEL}, {sizes.insize} px)", "",
             f"{result['machine']}; load average (1/5/15 min) {result['load_average_before']} before, "
             f"{result['load_average_after']} after; {result['seconds']} s in all.", "",
             f"Offline detection set (Fashion-MNIST items on photographs) at {sizes.insize} px: {sizes.train} training "
             f"images drawn (a share kept for validation), mAP (pycocotools, mAP@[.5:.95] in points) on the same "
             f"{sizes.test} test images for every row. Random initial weights (no downloads). Latency: the whole "
             "end-to-end graph (image batch to padded detections, NMS inside), batch 1 and 8; speed-up and Δ are "
             "against FP32 in the same runtime at the same batch size.", "",
             f"- FP32: fine-tuned from random weights, {fp32.get('iterations')} SGD iterations of {sizes.batch} "
             f"images at LR {sizes.lr} ({fp32.get('seconds_per_iter', 0):.2f} s/iteration), "
             f"{info['gflops']['fp32']} GFLOPs.",
             f"- pruned: GroupFisher (MMRazor), NORM_TYPE flops, INTERVAL {sizes.interval}, TARGET_FLOP_RATIO "
             f"{sizes.target_flop_ratio}, LR_RATIO 0.1, EPOCHS {sizes.prune_epochs} at batch {sizes.prune_batch}: "
             f"reached "
             f"{pruned.get('flop_ratio')} of the FLOPs after {pruned.get('pruning_iterations')} iterations, "
             f"{pruned.get('iterations')} in all; {info['gflops']['pruned']} GFLOPs, parameters "
             f"{pruned.get('params_before')} → {pruned.get('params_after')}.",
             f"- distilled-pkd: PKD on every neck level (MMRazor), teacher the FP32 detector, a fresh student of the "
             f"same architecture trained for the same {kd.get('iterations')} iterations as FP32: the FP32 rows are "
             "the student trained alone.",
             f"- Stage wall times (s): {info['stage_seconds']} (missing: reused from an earlier run).", ""]
    return lines


def main(argv=None) -> None:
    from visioncompress.report import build_report, compare, text_table
    from visioncompress.report.build import machine_description

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=HERE / "artifacts" / "mm-detection")
    parser.add_argument("--output", type=Path, default=HERE / "results_mm_detection.json")
    parser.add_argument("--tiny", action="store_true", help="64 px and a few images: checks the path, not speed")
    parser.add_argument("--fresh", action="store_true", help="rebuild every artifact")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"epochs of the FP32 detector and the distilled student (default {REAL.epochs}; one "
                             f"epoch is {REAL.train} images minus the validation share, in batches of {REAL.batch})")
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else REAL
    if args.epochs is not None:
        sizes = dataclasses.replace(sizes, epochs=args.epochs)
    root = args.artifacts / ("tiny" if args.tiny else "real") / f"epochs-{sizes.epochs}"
    if args.fresh:
        shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    result = {"machine": machine_description(), "load_average_before": [round(x, 2) for x in os.getloadavg()],
              "config": {"model": MODEL, "platform": PLATFORM, **sizes.__dict__}}
    rows, result["stages"] = run(root, sizes)
    for row in rows:
        row["machine"] = result["machine"]
    result["rows"] = compare(rows)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["seconds"] = round(time.perf_counter() - started)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    text = build_report(rows, args.output.with_name(args.output.stem + "_report.md"),
                        title=f"{MODEL} at {sizes.insize} px")
    args.output.with_name(args.output.stem + "_report.md").unlink()
    gflops = ["", "| model | GFLOPs |", "|---|---:|"]
    gflops += [f"| {name} | {value} |" for name, value in result["stages"]["gflops"].items()]
    body = text.replace("\n# ", "\n### ").replace("# ", "### ", 1)
    args.output.with_suffix(".md").write_text("\n".join(markdown_summary(result, sizes) + [body] + gflops) + "\n")
    print("\n" + text_table(rows))
    print(f"wrote {args.output} and {args.output.with_suffix('.md')}; {result['seconds']} s")


if __name__ == "__main__":
    main()
