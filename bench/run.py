"""`make bench`: measure every backend on this machine and write bench/results.json.

Fashion-MNIST at 32x32, resnet18 fine-tuned by our own stage; each INT8 backend against FP32 in the same
runtime at batch 1 and 32. Artifacts are kept under bench/artifacts/ (reused unless --fresh).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from visioncompress.benchmark import benchmark
from visioncompress.config import (
    BenchmarkConfig, DataConfig, ModelConfig, OnnxPTQConfig, OpenVinoPTQConfig, TorchPTQConfig, TrainConfig,
)
from visioncompress.data import prepare_dataset
from visioncompress.quantize import quantize
from visioncompress.report import build_report, compare, text_table
from visioncompress.report.build import machine_description
from visioncompress.train import finetune

HERE = Path(__file__).resolve().parent
DATA = DataConfig(insize=32, max_train_samples=12000, max_test_samples=2000, calibration_samples=256)
TRAIN = TrainConfig(batch_size=32, finetune_epochs=2)
MEASURE = BenchmarkConfig(batch_size=32, extra_batch_sizes=[], warmup=10, iterations=200, time_budget_s=15)

# variant label -> (artifact folder, config); all start from the same FP32 model
PTQ_VARIANTS = {
    "int8": [
        ("torch-int8", TorchPTQConfig(batch_size=32)),
        ("onnx-int8-s8s8", OnnxPTQConfig(batch_size=32)),
        ("openvino-int8", OpenVinoPTQConfig(transformer=False)),
    ],
    "int8-u8s8": [
        ("onnx-int8-u8s8", OnnxPTQConfig(batch_size=32, activation_type="QuantType.QUInt8", per_channel=True)),
    ],
}


def _ensure(path: Path, build) -> Path:
    if not (path / "model.json").is_file() and not (path / "manifest.json").is_file():
        build(path)
    return path


def run(artifacts: Path, fresh: bool) -> list[dict]:
    if fresh:
        shutil.rmtree(artifacts, ignore_errors=True)
    dataset = _ensure(artifacts / "dataset", lambda p: prepare_dataset(DATA, p))
    fp32 = _ensure(artifacts / "fp32", lambda p: finetune(dataset, p, ModelConfig(model="resnet18"), TRAIN))
    rows = benchmark(fp32, dataset, MEASURE, fp32_runtimes=("torch", "onnxruntime", "openvino"))
    for label, variants in PTQ_VARIANTS.items():
        for folder, config in variants:
            model = _ensure(artifacts / folder, lambda p, c=config: quantize(fp32, dataset, p, c))
            rows += benchmark(model, dataset, MEASURE, variant=label)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=HERE / "artifacts")
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    parser.add_argument("--fresh", action="store_true", help="rebuild every artifact")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = run(args.artifacts, args.fresh)
    for row in rows:
        row["machine"] = machine_description()
    args.output.write_text(json.dumps(compare(rows), indent=2) + "\n")
    build_report(rows, args.output.with_suffix(".md"), title="visioncompress make bench")
    print("\n" + text_table(rows))
    print(f"\n{machine_description()}; {time.perf_counter() - started:.0f} s")
    print(f"wrote {args.output} and {args.output.with_suffix('.md')}")


if __name__ == "__main__":
    main()
