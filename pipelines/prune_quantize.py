"""Prune, then quantize: structured pruning + fine-tuning of the FP32 model (PRUNE_RECOVERY=distill: distilled from
the unpruned model), then INT8 PTQ of the pruned model
on every CPU backend (PyTorch, ONNX Runtime, OpenVINO); the unpruned FP32 model, the pruned FP32 model and the
three pruned INT8 models are measured in those runtimes, side by side in one report (with a Pareto plot)."""

from visioncompress.components.prune.component import prune as prune_op
from visioncompress.pipelines._steps import measure, pipeline, prepare_data_and_model, step, summarize
from visioncompress.pipelines.compare import ptq_backends

CPU_RUNTIMES = ["torch", "onnxruntime", "openvino"]


@pipeline("prune_quantize")
def prune_quantize(p):
    data, model = prepare_data_and_model(p)
    fp32 = model.outputs["model"]
    pruned = step(prune_op, p, "prune + fine-tune (or distil: PRUNE_RECOVERY)", model=fp32, dataset=data.outputs["dataset"])
    pruned = pruned.outputs["pruned_model"]
    int8 = ptq_backends(p, data, pruned)
    results = {name: measure(p, out, data, name=f"pruned {name.replace('_', ' ')}", variant="pruned-int8")
               for name, out in int8.items()}
    results["pruned"] = measure(p, pruned, data, name="pruned", variant="pruned", fp32_runtimes=CPU_RUNTIMES)
    results["fp32"] = measure(p, fp32, data, name="FP32", fp32_runtimes=CPU_RUNTIMES)
    return summarize(p, results, {"pruned": pruned, **int8}, title="Prune, then quantize")
