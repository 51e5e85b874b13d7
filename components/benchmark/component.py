from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def benchmark(
    model: Input[Model],
    dataset: Input[Dataset],
    metrics: Output[Metrics],
    results: Output[Artifact],
    BATCH_SIZE: int = 1,
    LATENCY_BATCH_SIZES: List[int] = [32],
    FP32_RUNTIMES: List[str] = [],
    VARIANT: str = "",
    MAX_TEST_SAMPLES: int = 0,
):
    """Top-1, latency p50/p90 at batch 1 and BATCH_SIZE, throughput and size, in the model's own runtime."""
    from visioncompress.benchmark import benchmark as run_benchmark
    from visioncompress.config import BenchmarkConfig
    from visioncompress.kfp_io import log_metrics, stage, write_json
    from visioncompress.report import kfp_scalars

    with stage("benchmark"):
        config = BenchmarkConfig(batch_size=BATCH_SIZE, extra_batch_sizes=[int(b) for b in LATENCY_BATCH_SIZES],
                                 max_test_samples=MAX_TEST_SAMPLES)
        rows = run_benchmark(model.path, dataset.path, config, variant=VARIANT, fp32_runtimes=tuple(FP32_RUNTIMES))
        write_json(results, rows)
        log_metrics(metrics, kfp_scalars(rows))
