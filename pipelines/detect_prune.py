"""Object detection: Structured Pruning with GroupFisher (the spec's detection pruning table)."""

from visioncompress.components.prune_detection.component import prune_detection
from visioncompress.pipelines._steps import measure, pipeline, prepare_data_and_model, step, summarize


@pipeline("detect_prune")
def detect_prune(p):
    data, model = prepare_data_and_model(p)
    pruned = step(prune_detection, p, "GroupFisher pruning", model=model.outputs["model"],
                  dataset=data.outputs["dataset"]).outputs["pruned_model"]
    results = dict(fp32=measure(p, model.outputs["model"], data, name="FP32"),
                   pruned=measure(p, pruned, data, name="pruned", variant="pruned"))
    return summarize(p, results, {"pruned": pruned}, title="Detection Structured Pruning - GroupFisher")
