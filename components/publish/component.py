from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Model, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def publish(
    report: Input[Markdown],
    results: Input[Artifact],
    manifest: Output[Artifact],
    torch_ptq: Input[Model] = None,
    onnx_ptq: Input[Model] = None,
    openvino_ptq: Input[Model] = None,
    tensorrt_ptq: Input[Model] = None,
    torch_qat: Input[Model] = None,
    openvino_qat: Input[Model] = None,
    distilled: Input[Model] = None,
    pruned: Input[Model] = None,
    DESTINATION: str = "",
    ACCURACY_BUDGET: float = 1.0,
    RUN_DATE: str = "",
    PRIMARY: str = "",
    PUBLISH_OVER_BUDGET: bool = False,
    KEEP_LAST: int = 0,
    RUN_ID: str = "",
):
    """Upload the models, the report and a manifest under DESTINATION/<date>/<run id>/; move latest within budget."""
    from visioncompress.kfp_io import stage, write_json
    from visioncompress.storage import publish as publish_models

    with stage("publish"):
        candidates = {"torch_ptq": torch_ptq, "onnx_ptq": onnx_ptq, "openvino_ptq": openvino_ptq,
                      "tensorrt_ptq": tensorrt_ptq, "torch_qat": torch_qat, "openvino_qat": openvino_qat,
                      "distilled": distilled, "pruned": pruned}
        given = {name: artifact for name, artifact in candidates.items() if artifact is not None}
        sources = {name: artifact.uri for name, artifact in given.items()}
        sources.update(report=report.uri, results=results.uri)
        published = publish_models({name: a.path for name, a in given.items()}, report.path, results.path,
                                   DESTINATION, accuracy_budget=ACCURACY_BUDGET, run_date=RUN_DATE or None,
                                   primary=PRIMARY or None, sources=sources, run_id=RUN_ID or None,
                                   publish_over_budget=PUBLISH_OVER_BUDGET, keep_last=KEEP_LAST)
        write_json(manifest, published)
        manifest.metadata.update({"destination": published["destination"] or "", "published": published["published"],
                                  "status": published["status"], "metric_name": published["metric_name"],
                                  "metric": published["metric"], "latest_moved": published["latest"]["moved"]})
