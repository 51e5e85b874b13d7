from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Metrics, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def report(
    fp32: Input[Artifact],
    report: Output[Markdown],
    summary: Output[Metrics],
    results: Output[Artifact],
    torch_ptq: Input[Artifact] = None,
    onnx_ptq: Input[Artifact] = None,
    openvino_ptq: Input[Artifact] = None,
    tensorrt_ptq: Input[Artifact] = None,
    torch_qat: Input[Artifact] = None,
    openvino_qat: Input[Artifact] = None,
    distilled: Input[Artifact] = None,
    pruned: Input[Artifact] = None,
    TITLE: str = "visioncompress comparison",
):
    """One comparison report (Markdown table + plot) over the benchmark results that were given."""
    from visioncompress.benchmark import read_results
    from visioncompress.kfp_io import log_metrics, stage
    from visioncompress.report import build_report, kfp_scalars

    with stage("report"):
        given = [a for a in (fp32, torch_ptq, onnx_ptq, openvino_ptq, tensorrt_ptq, torch_qat, openvino_qat,
                             distilled, pruned) if a is not None]
        rows = read_results([a.path for a in given])
        build_report(rows, report.path, results.path, title=TITLE)
        log_metrics(summary, kfp_scalars(rows))
