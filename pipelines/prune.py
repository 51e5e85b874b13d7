"""Structured Pruning (classification) with torch-pruning, fine-tuned after pruning when TRAINING."""

from visioncompress.components.prune.component import prune as prune_op
from visioncompress.pipelines._steps import measure, pipeline, prepare_data_and_model, step, summarize


@pipeline("prune")
def prune(p):
    data, model = prepare_data_and_model(p)
    pruned = step(prune_op, p, "prune", model=model.outputs["model"], dataset=data.outputs["dataset"])
    pruned = pruned.outputs["pruned_model"]
    results = dict(fp32=measure(p, model.outputs["model"], data, name="FP32", fp32_runtimes=["torch"]),
                   pruned=measure(p, pruned, data, name="pruned", variant="pruned"))
    return summarize(p, results, {"pruned": pruned}, title="Structured Pruning")
