"""Benchmark parameters."""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import check_int, spec_field
from visioncompress.errors import ConfigError


@dataclass
class BenchmarkConfig:
    batch_size: int = spec_field(1, "BATCH_SIZE", help="the second latency batch size (batch 1 is always measured)")
    extra_batch_sizes: list = spec_field([32], "LATENCY_BATCH_SIZES", help="more latency batch sizes")
    warmup: int = spec_field(5, "WARMUP", help="untimed runs before timing")
    iterations: int = spec_field(30, "ITERATIONS", help="timed runs per batch size (at most)")
    time_budget_s: float = spec_field(10.0, "TIME_BUDGET_S", help="stop timing a batch size after this long")
    max_test_samples: int = spec_field(0, "MAX_TEST_SAMPLES", help="cap on test images for accuracy (0 = all)")
    threads: int = spec_field(0, "THREADS", help="intra-op threads for every runtime (0 = all cores)")

    def __post_init__(self) -> None:
        self.batch_size = check_int("BATCH_SIZE", self.batch_size, minimum=1)
        if not isinstance(self.extra_batch_sizes, (list, tuple)):
            raise ConfigError("LATENCY_BATCH_SIZES", self.extra_batch_sizes, "a list of positive integers")
        self.extra_batch_sizes = [check_int("LATENCY_BATCH_SIZES", b, minimum=1) for b in self.extra_batch_sizes]
        self.warmup = check_int("WARMUP", self.warmup, minimum=0)
        self.iterations = check_int("ITERATIONS", self.iterations, minimum=1)
        self.max_test_samples = check_int("MAX_TEST_SAMPLES", self.max_test_samples, minimum=0)
        self.threads = check_int("THREADS", self.threads, minimum=0)

    @property
    def batch_sizes(self) -> list[int]:
        return sorted({1, self.batch_size, *self.extra_batch_sizes})
