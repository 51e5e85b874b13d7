from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def benchmark_gpu(
    model: Input[Model],
    dataset: Input[Dataset],
    metrics: Output[Metrics],
    results: Output[Artifact],
    BATCH_SIZE: int = 1,
    LATENCY_BATCH_SIZES: List[int] = [32],
    VARIANT: str = "",
    MAX_TEST_SAMPLES: int = 0,
):
    """The benchmark stage on a GPU node: top-1, latency, throughput and size of a TensorRT engine."""
    from visioncompress.benchmark import benchmark as run_benchmark
    from visioncompress.config import BenchmarkConfig
    from visioncompress.kfp_io import log_metrics, stage, write_json
    from visioncompress.quantize.tensorrt import read_skip_notice
    from visioncompress.report import kfp_scalars

    with stage("benchmark_gpu"):
        skipped = read_skip_notice(model.path)
        if skipped is not None:
            print(f"NOTICE: TensorRT benchmark skipped, no engine was built: {skipped}", flush=True)
            write_json(results, [])
            return
        config = BenchmarkConfig(batch_size=BATCH_SIZE, extra_batch_sizes=[int(b) for b in LATENCY_BATCH_SIZES],
                                 max_test_samples=MAX_TEST_SAMPLES)
        rows = run_benchmark(model.path, dataset.path, config, variant=VARIANT)
        write_json(results, rows)
        log_metrics(metrics, kfp_scalars(rows))
