"""Accuracy and latency measurements, runtime-agnostic."""

from __future__ import annotations

import time

import numpy as np

from visioncompress.data import PreparedDataset


def top1(runner, dataset: PreparedDataset, *, batch_size: int = 64, limit: int = 0,
         split: str = "test") -> tuple[float, int]:
    """Top-1 accuracy (percent) on ``split`` (the test split by default), and how many images it used."""
    correct = total = 0
    for x, y in dataset.batches(split, batch_size, limit=limit):
        correct += int((runner.predict(x).argmax(1) == y).sum())
        total += len(y)
    return 100.0 * correct / max(total, 1), total


def latency(runner, batch: np.ndarray, *, warmup: int, iterations: int, time_budget_s: float) -> dict[str, float]:
    """p50/p90/mean latency in ms, and images per second, for one batch shape."""
    for _ in range(warmup):
        runner.predict(batch)
    times: list[float] = []
    deadline = time.perf_counter() + time_budget_s
    while len(times) < iterations and (len(times) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        runner.predict(batch)
        times.append((time.perf_counter() - start) * 1000.0)
    samples = np.asarray(times)
    mean_ms = float(samples.mean())
    return {
        "p50_ms": round(float(np.percentile(samples, 50)), 3),
        "p90_ms": round(float(np.percentile(samples, 90)), 3),
        "mean_ms": round(mean_ms, 3),
        "throughput_ips": round(len(batch) * 1000.0 / mean_ms, 1),
        "runs": len(times),
    }


def sample_batch(dataset: PreparedDataset, batch_size: int) -> np.ndarray:
    """A batch of exactly ``batch_size`` real test images (repeated if the split is smaller)."""
    images, _ = dataset.arrays("test", limit=batch_size)  # file-backed splits decode only what is used
    idx = np.arange(batch_size) % max(len(images), 1)
    return dataset.normalise(images[idx])
