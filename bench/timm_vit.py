"""`make bench` row for a timm ViT: DeiT-tiny (or another timm ViT) FP32 vs INT8 on ONNX Runtime and OpenVINO.

The model is built by the fine-tune stage with PLATFORM=timm at 224 px (timm's ImageNet weights when they can be
fetched and ``--pretrained``; random weights offline), optionally fine-tuned for one epoch on Fashion-MNIST, then
quantized by our ONNX Runtime PTQ (activation_type/quant_format auto, per-channel) and OpenVINO PTQ through NNCF
with ``TRANSFORMER=True`` (NNCF's transformer model type), and measured at batch 1 and 32 in each runtime with its
own FP32 model beside it. Same JSON and Markdown conventions as ``bench/real_size.py``.

    python -m bench.timm_vit [--tiny] [--models deit_tiny_patch16_224] [--finetune] [--pretrained]

``--tiny`` (32 px, a few images, short timings) checks the path in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
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
REAL = dict(insize=224, train=640, test=300, calibration=128,
            measure=BenchmarkConfig(batch_size=32, extra_batch_sizes=[], warmup=3, iterations=30, time_budget_s=6,
                                    max_test_samples=300))
TINY = dict(insize=32, train=64, test=32, calibration=16,
            measure=BenchmarkConfig(batch_size=8, extra_batch_sizes=[], warmup=1, iterations=3, time_budget_s=1,
                                    max_test_samples=32))
INT8 = [
    ("onnx-int8-auto", OnnxPTQConfig(batch_size=32, activation_type="auto", quant_format="auto", per_channel=True)),
    ("openvino-int8", OpenVinoPTQConfig(transformer=True, subset_size=128)),
]


def _ensure(path: Path, build) -> Path:
    if not (path / "model.json").is_file() and not (path / "manifest.json").is_file():
        build(path)
    return path


def run_model(name: str, root: Path, sizes: dict, *, train: bool, pretrained: bool) -> list[dict]:
    data = DataConfig(insize=sizes["insize"], max_train_samples=sizes["train"], max_test_samples=sizes["test"],
                      calibration_samples=sizes["calibration"])
    dataset = _ensure(root / f"dataset-{sizes['insize']}", lambda p: prepare_dataset(data, p))
    model = ModelConfig(model=name, platform="timm", pretrained=pretrained)
    config = TrainConfig(batch_size=32, finetune_epochs=1, training=train, workers=0)
    started = time.perf_counter()
    fp32 = _ensure(root / name / "fp32", lambda p: finetune(dataset, p, model, config))
    print(f"{name}: FP32 model ready in {time.perf_counter() - started:.0f} s")
    rows = benchmark(fp32, dataset, sizes["measure"], fp32_runtimes=("onnxruntime", "openvino"))
    for folder, quant in INT8:
        int8 = _ensure(root / name / folder, lambda p, c=quant: quantize(fp32, dataset, p, c))
        rows += benchmark(int8, dataset, sizes["measure"], variant="int8")
    # the FP32 rows of the runtimes we compare (the torch eager row is the model's own, kept for reference)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=HERE / "artifacts" / "timm-vit")
    parser.add_argument("--output", type=Path, default=HERE / "results_timm_vit.json")
    parser.add_argument("--models", nargs="*", default=["deit_tiny_patch16_224"])
    parser.add_argument("--tiny", action="store_true", help="32 px and a few images: checks the path, not speed")
    parser.add_argument("--finetune", action="store_true", help="one epoch on Fashion-MNIST before quantizing")
    parser.add_argument("--pretrained", action="store_true", help="timm's ImageNet weights (needs the HF hub)")
    parser.add_argument("--fresh", action="store_true", help="rebuild every artifact")
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else REAL
    if args.fresh:
        shutil.rmtree(args.artifacts, ignore_errors=True)
    started = time.perf_counter()
    result = {"machine": machine_description(), "load_average_before": [round(x, 2) for x in os.getloadavg()],
              "finetuned": args.finetune, "pretrained": args.pretrained, "models": {}}
    lines = []
    for name in args.models:
        rows = run_model(name, args.artifacts, sizes, train=args.finetune, pretrained=args.pretrained)
        for row in rows:
            row["machine"] = result["machine"]
        result["models"][name] = {"rows": compare(rows)}
        text = build_report(rows, args.output.with_name(f"{args.output.stem}_{name}.md"),
                            title=f"timm {name} at {sizes['insize']} px")
        lines += [text.replace("\n# ", "\n### ").replace("# ", "### ", 1), ""]
        print("\n" + text_table(rows))
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["seconds"] = round(time.perf_counter() - started)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    note = "" if args.finetune else " Not fine-tuned: the 10-class head is untrained, top-1 is not meaningful."
    header = [f"# make bench: timm ViT rows ({sizes['insize']} px)", "",
              f"{result['machine']}; load average (1/5/15 min) {result['load_average_before']} before, "
              f"{result['load_average_after']} after; {result['seconds']} s.{note}", ""]
    args.output.with_suffix(".md").write_text("\n".join(header + lines))
    print(f"wrote {args.output} and {args.output.with_suffix('.md')}; {result['seconds']} s")


if __name__ == "__main__":
    main()
