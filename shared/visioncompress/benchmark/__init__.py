"""Benchmarking: per-runtime runners, accuracy, latency percentiles, size."""

from visioncompress.benchmark.run import FP32_RUNTIMES, benchmark, read_results, write_results

__all__ = ["FP32_RUNTIMES", "benchmark", "read_results", "write_results"]
