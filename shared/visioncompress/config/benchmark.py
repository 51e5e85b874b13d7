"""Benchmark parameters."""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import check_int, param
from visioncompress.errors import ConfigError


@dataclass
class BenchmarkConfig:
    batch_size: int = param('BATCH_SIZE')
    extra_batch_sizes: list = param('LATENCY_BATCH_SIZES')
    warmup: int = param('WARMUP')
    iterations: int = param('ITERATIONS')
    time_budget_s: float = param('TIME_BUDGET_S')
    max_test_samples: int = param('MAX_TEST_SAMPLES')
    threads: int = param('THREADS')

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
