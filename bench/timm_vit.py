"""`make bench` rows for a timm ViT: DeiT-tiny (or another timm ViT) FP32 vs INT8 on ONNX Runtime and OpenVINO.

The model is built by the fine-tune stage with PLATFORM=timm (random weights: nothing can be downloaded here;
timm's ImageNet weights with ``--pretrained`` where the HF hub answers), fine-tuned by that stage (the project's
one training engine) for ``--finetune-steps`` batches of 32 on Fashion-MNIST at ``--insize`` (224 px, the size the
model was designed for), then quantized by our ONNX Runtime PTQ (activation_type / quant_format auto: the INT8
form chosen for this CPU, per-channel) and OpenVINO PTQ through NNCF with ``TRANSFORMER=True`` (NNCF's transformer
model type), and measured by the project's benchmark at batch 1 and 32 in each runtime with its own FP32 model
beside it (OpenVINO FP32 with INFERENCE_PRECISION_HINT f32; BF16 rows of their own where the CPU has BF16), top-1
on the same Fashion-MNIST test images for every row. Same JSON and Markdown conventions as ``bench/real_size.py``.

    python -m bench.timm_vit [--tiny] [--models deit_tiny_patch16_224] [--finetune-steps 40] [--insize 224]
                             [--test-images 300] [--no-finetune] [--pretrained] [--fresh]

``--tiny`` (32 px, a few images, short timings) checks the path in a few minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from visioncompress.benchmark import benchmark
from visioncompress.config import (
    BenchmarkConfig, DataConfig, ModelConfig, OnnxPTQConfig, OpenVinoPTQConfig, TrainConfig,
)
from visioncompress.data import prepare_dataset
from visioncompress.quantize import quantize
from visioncompress.report import build_report, compare, text_table
from visioncompress.report.build import machine_description
from visioncompress.train import finetune

HERE = Path(__file__).resolve().parent
BATCH = 32


@dataclass(frozen=True)
class Sizes:
    insize: int
    steps: int          # fine-tune batches of BATCH (one epoch; VAL_FRACTION more images are drawn for validation)
    test: int
    calibration: int
    measure: BenchmarkConfig

    @property
    def train(self) -> int:
        return math.ceil(self.steps * BATCH / 0.9)


REAL = Sizes(224, 40, 300, 128, BenchmarkConfig(batch_size=BATCH, extra_batch_sizes=[], warmup=3, iterations=30,
                                                time_budget_s=6, max_test_samples=300))
TINY = Sizes(32, 2, 32, 16, BenchmarkConfig(batch_size=8, extra_batch_sizes=[], warmup=1, iterations=3,
                                           time_budget_s=1, max_test_samples=32))
INT8 = [
    ("onnx-int8-auto", OnnxPTQConfig(batch_size=32, activation_type="auto", quant_format="auto", per_channel=True)),
    ("openvino-int8", OpenVinoPTQConfig(transformer=True, subset_size=128)),
]


def _ensure(path: Path, build) -> Path:
    if not (path / "model.json").is_file() and not (path / "manifest.json").is_file():
        build(path)
    return path


def run_model(name: str, root: Path, sizes: Sizes, *, train: bool, pretrained: bool) -> tuple[list[dict], dict]:
    data = DataConfig(insize=sizes.insize, max_train_samples=sizes.train, max_test_samples=sizes.test,
                      calibration_samples=sizes.calibration)
    dataset = _ensure(root / f"dataset-{sizes.insize}-{sizes.train}-{sizes.test}", lambda p: prepare_dataset(data, p))
    model = ModelConfig(model=name, platform="timm", pretrained=pretrained)
    config = TrainConfig(batch_size=BATCH, finetune_epochs=1, training=train, workers=0)
    started = time.perf_counter()
    folder = f"fp32-{sizes.insize}-{sizes.train}" if train else f"fp32-untrained-{sizes.insize}"
    fp32 = _ensure(root / name / folder, lambda p: finetune(dataset, p, model, config))
    timings = {"finetune_s": round(time.perf_counter() - started, 1)}
    print(f"{name}: FP32 model ready in {timings['finetune_s']:.0f} s")
    started = time.perf_counter()
    rows = benchmark(fp32, dataset, sizes.measure, fp32_runtimes=("onnxruntime", "openvino"))
    for label, quant in INT8:
        int8 = _ensure(root / name / f"{label}-{folder}", lambda p, c=quant: quantize(fp32, dataset, p, c))
        rows += benchmark(int8, dataset, sizes.measure, variant="int8")
    timings["quantize_and_measure_s"] = round(time.perf_counter() - started, 1)
    return rows, timings


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=HERE / "artifacts" / "timm-vit")
    parser.add_argument("--output", type=Path, default=HERE / "results_timm_vit.json")
    parser.add_argument("--models", nargs="*", default=["deit_tiny_patch16_224"])
    parser.add_argument("--tiny", action="store_true", help="32 px and a few images: checks the path, not speed")
    parser.add_argument("--no-finetune", action="store_true",
                        help="keep the starting weights (an untrained 10-class head: top-1 is not meaningful)")
    parser.add_argument("--finetune-steps", type=int, default=None,
                        help=f"fine-tune batches of {BATCH} (default {REAL.steps}; --tiny {TINY.steps})")
    parser.add_argument("--insize", type=int, default=None, help=f"input size (default {REAL.insize}; --tiny "
                        f"{TINY.insize}; a multiple of the patch size, 16)")
    parser.add_argument("--test-images", type=int, default=None,
                        help=f"Fashion-MNIST test images for top-1 (default {REAL.test}; --tiny {TINY.test})")
    parser.add_argument("--pretrained", action="store_true", help="timm's ImageNet weights (needs the HF hub)")
    parser.add_argument("--fresh", action="store_true", help="rebuild every artifact")
    return parser.parse_args(argv)


def sizes_for(args: argparse.Namespace) -> Sizes:
    sizes = TINY if args.tiny else REAL
    changes = {}
    if args.finetune_steps is not None:
        changes["steps"] = args.finetune_steps
    if args.insize is not None:
        changes["insize"] = args.insize
    if args.test_images is not None:
        changes["test"] = args.test_images
        changes["measure"] = dataclasses.replace(sizes.measure, max_test_samples=args.test_images)
    return dataclasses.replace(sizes, **changes)


def main(argv=None) -> None:
    args = parse_args(argv)
    sizes = sizes_for(args)
    if args.fresh:
        shutil.rmtree(args.artifacts, ignore_errors=True)
    started = time.perf_counter()
    train = not args.no_finetune
    result = {"machine": machine_description(), "load_average_before": [round(x, 2) for x in os.getloadavg()],
              "finetuned": train, "pretrained": args.pretrained, "insize": sizes.insize,
              "finetune_steps": sizes.steps if train else 0, "batch_size": BATCH, "test_images": sizes.test,
              "models": {}}
    lines = []
    for name in args.models:
        rows, timings = run_model(name, args.artifacts, sizes, train=train, pretrained=args.pretrained)
        for row in rows:
            row["machine"] = result["machine"]
        result["models"][name] = {"rows": compare(rows), "seconds": timings}
        report = args.output.with_name(f"{args.output.stem}_{name}.md")
        text = build_report(rows, report, title=f"timm {name} at {sizes.insize} px")
        report.unlink()  # the section goes into the one Markdown file below
        lines += [text.replace("\n# ", "\n### ").replace("# ", "### ", 1), ""]
        print("\n" + text_table(rows))
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["seconds"] = round(time.perf_counter() - started)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    weights = "timm's ImageNet weights" if args.pretrained else "random initial weights (nothing can be downloaded)"
    trained = (f"fine-tuned by the fine-tune stage for {sizes.steps} steps of {BATCH} Fashion-MNIST images "
               f"(one epoch, Adam at the default LEARNING_RATE)" if train else
               "not fine-tuned: the 10-class head is untrained, top-1 is not meaningful")
    header = [f"# make bench: timm ViT rows ({sizes.insize} px)", "",
              f"{result['machine']}; load average (1/5/15 min) {result['load_average_before']} before, "
              f"{result['load_average_after']} after; {result['seconds']} s.", "",
              f"{', '.join(args.models)} from {weights}, {trained}; top-1 on the same {sizes.test} test images for "
              "every row. INT8: ONNX Runtime static PTQ with activation_type/quant_format auto (the form chosen for "
              "this CPU), per-channel; OpenVINO PTQ through NNCF with TRANSFORMER=True (nncf.ModelType.TRANSFORMER).",
              ""]
    args.output.with_suffix(".md").write_text("\n".join(header + lines))
    print(f"wrote {args.output} and {args.output.with_suffix('.md')}; {result['seconds']} s")


if __name__ == "__main__":
    main()
