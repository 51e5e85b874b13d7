"""GPU training throughput: a bare PyTorch loop against the fine-tune stage's training engine, same data.

    python bench/gpu_train.py [--batch-size 128] [--steps 60] [--warmup 15] [--out bench/results_gpu_train.json]

resnet50 (torchvision, random weights, 1000 classes) at 224 px, AMP bf16 autocast, SGD, channels-last, on
synthetic batches already in GPU memory (no data loading in either measurement). Rows: images/s of (1) a bare
1-process loop (zero_grad, autocast forward, loss, backward, step) and (2) the library's training entry on the
same batches, with their ratio (target: the engine within 15% of the bare loop). Without CUDA it prints why and
exits 0 (so `make bench` runs everywhere).

The engine is measured as a whole: ``fit`` includes moving the model back to the CPU at the end, so the timed
epoch slightly favours the bare loop.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _batches(torch, n: int, batch_size: int, insize: int, classes: int, device):
    gen = torch.Generator(device="cpu").manual_seed(0)
    images = torch.randn(n, batch_size, 3, insize, insize, generator=gen).to(device)
    labels = torch.randint(0, classes, (n, batch_size), generator=gen).to(device)
    return [(images[i].contiguous(memory_format=torch.channels_last), labels[i]) for i in range(n)]


def _model(torch, device):
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet50(weights=None).to(device).to(memory_format=torch.channels_last)


def bare_loop(torch, batches, *, steps: int, warmup: int, lr: float = 0.1) -> float:
    """images/s of the plainest correct AMP training loop."""
    device = batches[0][0].device
    model = _model(torch, device).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for i in range(warmup):
        step(*batches[i % len(batches)])
    _sync(torch, device)
    started = time.perf_counter()
    for i in range(steps):
        step(*batches[i % len(batches)])
    _sync(torch, device)
    return steps * batches[0][0].shape[0] / (time.perf_counter() - started)


def engine_steps(torch, batches, *, steps: int, warmup: int, lr: float = 0.1) -> float:
    """images/s of the one training engine (``visioncompress.train.fit``, what the fine-tune stage runs) on the
    same batches and model: DEVICE and AMP as the stage would set them, the engine's own autocast, its batch
    moves (no-ops for batches already on the GPU) and its bookkeeping. One warm-up epoch, then one timed epoch."""
    from visioncompress.config import TrainConfig
    from visioncompress.train import ClassificationTask, fit

    device = batches[0][0].device
    size = batches[0][0].shape[0]
    config = TrainConfig(batch_size=size, optimizer="SGD", learning_rate=lr, validate=False, workers=0,
                         device="cuda" if device.type == "cuda" else "cpu", amp=True)
    model = _model(torch, device)
    task = ClassificationTask(_InMemory(batches, warmup))
    fit(model, task, config, epochs=1, name="bench-warmup")
    model.to(device).to(memory_format=torch.channels_last)  # fit returns the model on the CPU
    task = ClassificationTask(_InMemory(batches, steps))
    _sync(torch, device)
    started = time.perf_counter()
    fit(model, task, config, epochs=1, name="bench")
    _sync(torch, device)
    return steps * size / (time.perf_counter() - started)


class _InMemory:
    """A dataset as the engine reads it (split sizes, classes, ``loader``) over batches already in memory."""

    def __init__(self, batches, steps: int):
        from types import SimpleNamespace

        self.batches, self.steps = batches, steps
        size = batches[0][0].shape[0]
        self.manifest = SimpleNamespace(splits={"train": steps * size}, num_classes=1000)

    def loader(self, split, batch_size, **_):
        return [self.batches[i % len(self.batches)] for i in range(self.steps)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--insize", type=int, default=224)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--out", default=str(HERE / "results_gpu_train.json"))
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="check this script on a CPU (tiny sizes, nothing written); not a measurement")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("gpu_train: torch is not installed; skipped")
        return 0
    if args.cpu_smoke:
        device = torch.device("cpu")
        batches = _batches(torch, 2, 4, 32, 1000, device)
        bare = bare_loop(torch, batches, steps=2, warmup=1)
        engine = engine_steps(torch, batches, steps=2, warmup=1)
        print(f"gpu_train --cpu-smoke: bare {bare:.1f} img/s, engine {engine:.1f} img/s (CPU, not a measurement)")
        return 0
    if not torch.cuda.is_available():
        print("gpu_train: no CUDA device on this machine; skipped (run it on a GPU node)")
        return 0
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    batches = _batches(torch, 8, args.batch_size, args.insize, 1000, device)
    bare = bare_loop(torch, batches, steps=args.steps, warmup=args.warmup)
    engine = engine_steps(torch, batches, steps=args.steps, warmup=args.warmup)
    gpu = torch.cuda.get_device_name(device)
    rows = [{"model": "resnet50", "insize": args.insize, "batch_size": args.batch_size, "amp": "bf16",
             "processes": 1, "mode": mode, "images_per_s": round(ips, 1), "gpu": gpu}
            for mode, ips in (("bare-loop", bare), ("engine", engine))]
    rows[1]["ratio_to_bare"] = round(engine / bare, 3)
    result = {"machine": f"{gpu}, {platform.processor() or platform.machine()}", "torch": torch.__version__,
              "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        print(f"{row['mode']:>10}: {row['images_per_s']:8.1f} img/s" + (
            f"  ({row['ratio_to_bare']:.2f} of the bare loop)" if "ratio_to_bare" in row else ""))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
