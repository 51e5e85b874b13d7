"""`make bench`: measure every backend and algorithm on this machine and write bench/results.json.

Fashion-MNIST at 32x32, resnet18 fine-tuned by our own stage. PTQ: each INT8 backend against FP32 in the
same runtime at batch 1 and 32. QAT: torch and OpenVINO INT8 after one QAT epoch. Distillation: a small
student trained with the resnet18 teacher against the same student trained alone for the same epochs.
Pruning: resnet18 at 50% fewer parameters, fine-tuned for 2 epochs on the full training split. Detection rows
(bench/detection.py) go to results_detection.json; the 224 px rows (bench/real_size.py: ImageNet MobileNetV2 and
ResNet-50, every backend's float and INT8 forms, the issue's targets and profiles) to results_224.json; the timm
ViT rows (bench/timm_vit.py: DeiT-tiny at 224 px, FP32 vs INT8 in ONNX Runtime and OpenVINO) to
results_timm_vit.json; the OpenMMLab detector rows (bench/mm_detection.py: YOLOX-tiny FP32 vs INT8, pruned,
distilled, run by the OpenMMLab environment's Python, --mm-python) to results_mm_detection.json. Artifacts are
kept under bench/artifacts/ (reused unless --fresh); `--only classification` runs the 32x32 rows alone
(`--only ptq` without the training-based ones), `--only detection`
/ `--only real-size` / `--only timm-vit` / `--only mm-detection` run those rows alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from visioncompress.benchmark import benchmark
from visioncompress.config import (
    BenchmarkConfig, DataConfig, DistillConfig, ModelConfig, OnnxPTQConfig, OpenVinoPTQConfig, OpenVinoQATConfig,
    PruneConfig, TorchPTQConfig, TorchQATConfig, TrainConfig,
)
from visioncompress.distill import distill
from visioncompress.prune import prune
from visioncompress.data import prepare_dataset
from visioncompress.quantize import quantize, quantize_aware
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
    "int8-auto": [  # the form chosen for this CPU (and timed on it)
        ("onnx-int8-auto", OnnxPTQConfig(batch_size=32, activation_type="auto", quant_format="auto", tune=True,
                                         per_channel=True)),
    ],
}


# QAT and distillation train on a 3000-image cut of the same training data (the test split
# is the same: data preparation draws it independently of the training cap).
SHORT_DATA = DataConfig(insize=32, max_train_samples=3000, max_test_samples=2000, calibration_samples=256)
QAT_TRAIN = TrainConfig(batch_size=32)
QAT = [("torch-qat-int8", TorchQATConfig(qat_epochs=1, batch_size=32)),
       ("openvino-qat-int8", OpenVinoQATConfig(qat_epochs=1, batch_size=32, transformer=False))]
STUDENT = ModelConfig(model="mobilenet_v2")
STUDENT_EPOCHS = 3
KD = DistillConfig(epochs=STUDENT_EPOCHS, lr=0.001, temperature=4, lambda_=0.5)
PRUNE = PruneConfig(target_prune_rate=0.5)


def _ensure(path: Path, build) -> Path:
    if not (path / "model.json").is_file() and not (path / "manifest.json").is_file():
        build(path)
    return path


def run(artifacts: Path, fresh: bool = False) -> list[dict]:
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


def run_training_based(artifacts: Path) -> list[dict]:
    dataset = artifacts / "dataset"
    fp32 = artifacts / "fp32"
    short = _ensure(artifacts / "dataset-short", lambda p: prepare_dataset(SHORT_DATA, p))
    rows: list[dict] = []
    for folder, config in QAT:
        model = _ensure(artifacts / folder, lambda p, c=config: quantize_aware(fp32, short, p, c, QAT_TRAIN))
        rows += benchmark(model, dataset, MEASURE, variant="qat-int8")
    alone = _ensure(artifacts / "student-alone", lambda p: finetune(
        short, p, STUDENT, TrainConfig(batch_size=32, finetune_epochs=STUDENT_EPOCHS)))
    rows += benchmark(alone, dataset, MEASURE, variant="student-alone")
    student = _ensure(artifacts / "student-distilled", lambda p: distill(
        short, p, STUDENT, TrainConfig(batch_size=32, training=False), KD, teacher_dir=fp32))
    rows += benchmark(student, dataset, MEASURE, variant="distilled")
    pruned = _ensure(artifacts / "pruned-50", lambda p: prune(
        fp32, dataset, p, PRUNE, TrainConfig(batch_size=32, finetune_epochs=2)))
    # a pruned model is deployed through ONNX Runtime / OpenVINO too, not only eager PyTorch
    rows += benchmark(pruned, dataset, MEASURE, variant="pruned-50", fp32_runtimes=("onnxruntime", "openvino"))
    return rows


def _e2e_options(args) -> dict:
    if args.e2e_epochs is None:
        return {}
    from dataclasses import replace

    from bench.detection import E2E_TRAIN

    return {"train": replace(E2E_TRAIN, finetune_epochs=args.e2e_epochs)}


ONLY = ["all", "ptq", "classification", "detection", "detection-e2e", "real-size", "timm-vit", "mm-detection"]
MM_PYTHON = HERE.parent / ".venv-mm" / "bin" / "python"


def mm_detection_command(mm_python: str, artifacts: Path, output: Path) -> list[str]:
    """bench.mm_detection run by the OpenMMLab environment's Python (its own venv: requirements-mm.txt)."""
    return [mm_python, "-m", "bench.mm_detection", "--artifacts", str(artifacts / "mm-detection"),
            "--output", str(output.with_name(output.stem + "_mm_detection.json"))]


def run_mm_detection(mm_python: str, artifacts: Path, output: Path, *, required: bool) -> None:
    if not Path(mm_python).is_file():
        message = (f"mm-detection rows skipped: no OpenMMLab environment at {mm_python} (make bench sets up "
                   ".venv-mm; or pass --mm-python / VC_MM_PYTHON)")
        if required:
            raise SystemExit(message)
        print(message)
        return
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")])))
    subprocess.run(mm_detection_command(mm_python, artifacts, output), check=True, cwd=HERE.parent, env=env)


def _append_match(report: Path, profiles: Path) -> None:
    """The FP32 graph-vs-PyTorch check of the end-to-end detection rows, appended to their report."""
    found = json.loads(profiles.read_text()).get("fp32_vs_pytorch", {})
    lines = ["", "## FP32 end-to-end graph against the PyTorch detector", "",
             "| runtime | images | detections | matched | images with another count | max box diff (px) | "
             "max score diff |", "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {name} | {m['images']} | {m['detections']} | {m['matched']} | {m['count_differs']} | "
              f"{m['max_box_px']:.2g} | {m['max_score']:.2g} |" for name, m in found.items()]
    bounds = next(iter(found.values()), {"box_px": "-", "score": "-"})
    lines += ["", f"Matched: same label, every box coordinate within {bounds['box_px']} px and the score within "
              f"{bounds['score']}.", ""]
    with report.open("a") as handle:
        handle.write("\n".join(lines))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=HERE / "artifacts")
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    parser.add_argument("--fresh", action="store_true", help="rebuild every artifact")
    parser.add_argument("--only", choices=ONLY, default="all", help="which rows to measure")
    parser.add_argument("--mm-python", default=os.environ.get("VC_MM_PYTHON", str(MM_PYTHON)),
                        help="the OpenMMLab environment's Python for the mm-detection rows (default: $VC_MM_PYTHON, "
                             "else .venv-mm/bin/python; the rows are skipped, saying so, where it does not exist)")
    parser.add_argument("--detector", type=Path, default=None,
                        help="detection-e2e: the FP32 detector whose weights are fine-tuned at 320 px (default: the "
                             "detection rows' 96 px FP32 detector, 6 epochs)")
    parser.add_argument("--e2e-epochs", type=int, default=None,
                        help="detection-e2e: fine-tuning epochs at 320 px (default 3 of 81 steps of 8 images; 0 measures "
                             "the weights as they are)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.fresh:
        shutil.rmtree(args.artifacts, ignore_errors=True)
    outputs = []
    if args.only in ("all", "real-size"):
        from bench.real_size import main as real_size

        real_size(["--artifacts", str(args.artifacts / "real-size"),
                   "--output", str(args.output.with_name(args.output.stem + "_224.json"))])
    if args.only in ("all", "ptq", "classification"):
        rows = run(args.artifacts, False)
        if args.only in ("all", "classification"):
            rows += run_training_based(args.artifacts)
        outputs.append((rows, args.output, "visioncompress make bench"))
    if args.only in ("all", "detection", "detection-e2e"):
        from bench.detection import run_detection_e2e

        rows, profiles = run_detection_e2e(args.artifacts, _ensure, args.detector, **_e2e_options(args))
        output = args.output.with_name(args.output.stem + "_detection_e2e.json")
        output.with_name(output.stem + "_profiles.json").write_text(json.dumps(profiles, indent=2) + "\n")
        outputs.append((rows, output, "visioncompress make bench: end-to-end detectors at 320 px"))
    if args.only in ("all", "detection"):
        from bench.detection import run_detection

        detection_output = args.output.with_name(args.output.stem + "_detection.json")
        outputs.append((run_detection(args.artifacts, _ensure), detection_output,
                        "visioncompress make bench: detection"))
    if args.only in ("all", "timm-vit"):
        from bench.timm_vit import main as timm_vit

        timm_vit(["--artifacts", str(args.artifacts / "timm-vit"),
                  "--output", str(args.output.with_name(args.output.stem + "_timm_vit.json"))])
    if args.only in ("all", "mm-detection"):
        run_mm_detection(args.mm_python, args.artifacts, args.output, required=args.only == "mm-detection")
    for rows, output, title in outputs:
        for row in rows:
            row["machine"] = machine_description()
        output.write_text(json.dumps(compare(rows), indent=2) + "\n")
        build_report(rows, output.with_suffix(".md"), title=title)
        if output.name.endswith("_detection_e2e.json"):
            _append_match(output.with_suffix(".md"), output.with_name(output.stem + "_profiles.json"))
        print("\n" + text_table(rows))
        print(f"wrote {output} and {output.with_suffix('.md')}")
    print(f"\n{machine_description()}; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
