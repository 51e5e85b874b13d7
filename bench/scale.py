"""`make bench-scale`: memory and time of data preparation + fine-tuning on large image folders.

Set-up (not measured): Fashion-MNIST written out as PNG files, one subfolder per class, 10,000 and 60,000 images
(`--sizes`), under `--workdir` (kept and reused). Then, each in a fresh subprocess:

- `prepare+epoch`: prepare the folder dataset at `--insize` 224 (file lists + a normalisation sample) and one
  fine-tune epoch of resnet18 through the library's `train` (the training engine) with `--workers` DataLoader
  workers, augmentation on. A full epoch of 60,000 images at 224 px takes hours on 2 CPU cores, so the epoch is
  cut to `--steps` batches of `--batch-size` (`epoch_images_measured`); validation reads one batch. Peak RSS is
  the process's VmHWM; `children_peak_rss_mb` is the largest child's (a DataLoader worker, or the helper process
  that importing torchvision starts, ~430 MB, whichever is larger).
- `loader`: the training loader alone (decode + RandomResizedCrop + flip + normalise at 224 px), img/s, with
  0 and `--workers` workers.
- `step-time`: resnet18 at 224 px on the same in-memory batches: a bare PyTorch loop (zero_grad, forward,
  cross-entropy, backward, Adam step) against the library's `train`; their ratio.

Rows go to bench/results_scale.json with the machine's load average (the numbers are only as quiet as the
machine was).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def children_peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)


# ---- set-up: image folders (not measured) -------------------------------------------------------------------
def write_folder(root: Path, images: int) -> Path:
    import numpy as np
    from PIL import Image

    from visioncompress.data.sources import FASHION_MNIST_CLASSES, read_fashion_mnist

    done = root / ".complete"
    if done.is_file():
        return root
    raw = read_fashion_mnist()
    pixels = np.concatenate([raw.train_images, raw.test_images])[:images, :, :, 0]
    labels = np.concatenate([raw.train_labels, raw.test_labels])[:images]
    names = [name.replace("/", "-") for name in FASHION_MNIST_CLASSES]
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
    for index, (image, label) in enumerate(zip(pixels, labels)):
        Image.fromarray(image).save(root / names[int(label)] / f"{index:06d}.png")
    done.write_text(f"{images}\n")
    return root


# ---- measured parts (each in its own process) -------------------------------------------------------------
def _limited(dataset, *, train_images: int, val_images: int, workers: int):
    """The dataset as the training engine sees it, its epoch cut to ``train_images`` and validation to
    ``val_images`` images; training batches come from the augmenting, worker-backed loader."""
    import copy

    from visioncompress.data.loaders import PreparedDataset

    class Limited(PreparedDataset):
        def _cap(self, split: str) -> int:
            return train_images if split == "train" else val_images

        def loader(self, split, batch_size, **kwargs):
            kwargs["limit"] = min(kwargs.get("limit") or self._cap(split), self._cap(split))
            kwargs["workers"] = kwargs.get("workers") or workers
            return super().loader(split, batch_size, **kwargs)

        def torch_batches(self, split, batch_size, *, shuffle=False, seed=0, limit=0, drop_last=False, workers=0):
            if shuffle:  # the training epoch
                return self.loader(split, batch_size, train=True, seed=seed, drop_last=drop_last)
            return super().torch_batches(split, batch_size, limit=self._cap(split), drop_last=drop_last)

    manifest = copy.deepcopy(dataset.manifest)
    manifest.splits = {**manifest.splits, "train": train_images, "val": val_images}
    return Limited(dataset.directory, manifest)


def measure_prepare_epoch(args) -> dict:
    import torch

    from visioncompress.config import DataConfig, TrainConfig
    from visioncompress.data import load_dataset, prepare_dataset
    from visioncompress.models.zoo import build_classifier
    from visioncompress.train import ClassificationTask, fit

    import torchvision  # noqa: F401  (its import, ~10 s on a loaded machine, is no part of data preparation)

    torch.set_num_threads(args.threads)
    folder = Path(args.workdir) / f"fmnist-{args.images}"
    out = Path(args.workdir) / f"dataset-{args.images}-{args.insize}"
    started = time.perf_counter()
    manifest = prepare_dataset(DataConfig(source="folder", path=str(folder), insize=args.insize, val_fraction=0.1,
                                          calibration_samples=256, seed=0), out)
    prepared = time.perf_counter()
    prepare_rss = peak_rss_mb()
    dataset = _limited(load_dataset(out), train_images=args.steps * args.batch_size, val_images=args.batch_size,
                       workers=args.workers)
    torch.manual_seed(0)
    model = build_classifier("resnet18", manifest.num_classes, input_size=args.insize)
    fit(model, ClassificationTask(dataset), TrainConfig(batch_size=args.batch_size, finetune_epochs=1,
                                                         learning_rate=0.001, workers=args.workers), epochs=1,
        name="scale")
    finished = time.perf_counter()
    measured = args.steps * args.batch_size
    return {
        "kind": "prepare+epoch", "images": args.images, "insize": args.insize,
        "train_images": manifest.splits["train"], "storage": manifest.storage,
        "artifact_kb": round(sum(p.stat().st_size for p in out.iterdir()) / 1024, 1),
        "prepare_seconds": round(prepared - started, 1), "prepare_peak_rss_mb": prepare_rss,
        "steps": args.steps, "batch_size": args.batch_size, "epoch_images_measured": measured,
        "train_seconds": round(finished - prepared, 1),
        "seconds": round(finished - started, 1),
        "images_per_s": round(measured / (finished - prepared), 2),
        "peak_rss_mb": peak_rss_mb(), "children_peak_rss_mb": children_peak_rss_mb(),
        "workers": args.workers, "threads": args.threads,
        "note": "prepare over all images; the epoch cut to `steps` batches (validation: one batch)",
    }


def measure_loader(args) -> dict:
    import torch

    from visioncompress.data import load_dataset

    import torchvision.transforms.v2.functional  # noqa: F401  (imported before the clock starts)

    torch.set_num_threads(args.threads)
    dataset = load_dataset(Path(args.workdir) / f"dataset-{args.images}-{args.insize}")
    batches = args.loader_batches
    loader = dataset.loader("train", args.batch_size, train=True, seed=0, workers=args.workers,
                            limit=batches * args.batch_size)
    started = time.perf_counter()
    count = sum(len(y) for _, y in loader)
    seconds = time.perf_counter() - started
    return {"kind": "loader", "images": count, "insize": args.insize, "workers": args.workers,
            "batch_size": args.batch_size, "seconds": round(seconds, 2), "images_per_s": round(count / seconds, 1),
            "peak_rss_mb": peak_rss_mb(), "children_peak_rss_mb": children_peak_rss_mb(),
            "note": "training loader alone: PNG decode + RandomResizedCrop + flip + normalise, dataset of "
                    f"{dataset.size('train')} training images"}


def measure_step_time(args) -> dict:
    import copy

    import torch

    from visioncompress.config import TrainConfig
    from visioncompress.data import load_dataset
    from visioncompress.models.zoo import build_classifier
    from visioncompress.train import ClassificationTask, fit

    torch.set_num_threads(args.threads)
    source = load_dataset(Path(args.workdir) / f"dataset-{args.images}-{args.insize}")
    steps = args.step_batches
    batches = list(source.loader("train", args.batch_size, train=True, seed=0, limit=steps * args.batch_size,
                                 drop_last=True))
    config = TrainConfig(batch_size=args.batch_size, finetune_epochs=1, learning_rate=0.001)

    def fresh():
        torch.manual_seed(0)
        return build_classifier("resnet18", source.manifest.num_classes, input_size=args.insize)

    def bare() -> float:
        model = fresh().train()
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        criterion = torch.nn.CrossEntropyLoss()
        started = time.perf_counter()
        for x, y in batches:
            optimizer.zero_grad(set_to_none=True)
            criterion(model(x), y).backward()
            optimizer.step()
        return (time.perf_counter() - started) / len(batches)

    class InMemory:
        """The same batches behind the dataset interface the training engine reads (no validation images)."""

        def __init__(self):
            self.manifest = copy.deepcopy(source.manifest)
            self.manifest.splits = {**self.manifest.splits, "train": len(batches) * args.batch_size, "val": 0}

        def size(self, split):
            return self.manifest.splits.get(split, 0)

        def loader(self, split, batch_size, **kwargs):
            return list(batches) if split == "train" else []

        def torch_batches(self, split, batch_size, **kwargs):
            return self.loader(split, batch_size)

    def engine() -> float:
        model = fresh()
        started = time.perf_counter()
        fit(model, ClassificationTask(InMemory()), config, epochs=1, name="scale-step")
        return (time.perf_counter() - started) / len(batches)

    runs = [(bare(), engine()) for _ in range(2)]  # interleaved, best of two each: the machine's load drifts
    bare_s, engine_s = min(b for b, _ in runs), min(e for _, e in runs)
    return {"kind": "step-time", "images": len(batches) * args.batch_size, "insize": args.insize,
            "batch_size": args.batch_size, "steps": len(batches), "bare_step_s": round(bare_s, 3),
            "engine_step_s": round(engine_s, 3), "engine_over_bare": round(engine_s / bare_s, 3),
            "seconds": round(engine_s * len(batches), 1),
            "images_per_s": round(args.batch_size / engine_s, 2), "peak_rss_mb": peak_rss_mb(),
            "threads": args.threads,
            "note": "same in-memory batches; best of two interleaved runs each: bare = a plain loop, engine = "
                    "train() incl. its per-epoch bookkeeping"}


MEASURES = {"prepare-epoch": measure_prepare_epoch, "loader": measure_loader, "step-time": measure_step_time}


def _child(args, measure: str, **overrides) -> dict:
    argv = [sys.executable, "-m", "bench.scale", "--measure", measure]
    for key, value in {**vars(args), **overrides}.items():
        if key in ("measure", "output", "sizes"):
            continue
        argv += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": str(overrides.get("threads", args.threads))}
    run = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env)
    if run.returncode != 0:
        raise SystemExit(f"{measure} failed:\n{run.stderr[-4000:]}")
    row = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,60000")
    parser.add_argument("--insize", type=int, default=224)
    parser.add_argument("--steps", type=int, default=20, help="training batches measured per epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--loader-batches", type=int, default=30)
    parser.add_argument("--step-batches", type=int, default=6)
    parser.add_argument("--workdir", default=str(HERE / "scale-data"))
    parser.add_argument("--output", default=str(HERE / "results_scale.json"))
    parser.add_argument("--measure", choices=sorted(MEASURES))
    parser.add_argument("--images", type=int, default=0)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(MEASURES[args.measure](args)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    for size in sizes:
        started = time.perf_counter()
        write_folder(Path(args.workdir) / f"fmnist-{size}", size)
        print(f"set-up: {size} PNG files in {time.perf_counter() - started:.0f} s", flush=True)
    rows = [_child(args, "prepare-epoch", images=size) for size in sizes]
    rows += [_child(args, "loader", images=sizes[0], workers=workers) for workers in sorted({0, args.workers})]
    rows.append(_child(args, "step-time", images=sizes[0]))
    load = os.getloadavg()
    by_size = [r for r in rows if r["kind"] == "prepare+epoch"]
    peaks = [r["peak_rss_mb"] for r in by_size]
    summary = {
        "peak_rss_mb_max": max(peaks), "peak_rss_within_3gib": max(peaks) <= 3 * 1024,
        "peak_rss_spread": round(max(peaks) / min(peaks) - 1, 3),
        "engine_over_bare": next(r["engine_over_bare"] for r in rows if r["kind"] == "step-time"),
    }
    result = {"machine": {"platform": platform.platform(), "cpus": len(os.sched_getaffinity(0)),
                          "load_average_at_end": [round(v, 2) for v in load]},
              "summary": summary, "rows": rows}
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
