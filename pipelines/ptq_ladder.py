"""INT8 through the accuracy-aware ladder: fine-tune; plain PTQ -> PTQ with accuracy control -> QAT distilled from
the FP32 model in the LADDER_BACKEND runtime, stopping at the first within ACCURACY_BUDGET; FP32 and the chosen
INT8 model measured side by side. A model over budget is never published silently (PUBLISH_OVER_BUDGET)."""

from visioncompress.components.ptq_ladder.component import ptq_ladder as ptq_ladder_op
from visioncompress.pipelines._steps import measure, pipeline, prepare_data_and_model, step, summarize

CPU_RUNTIMES = ["torch", "onnxruntime", "openvino"]


@pipeline("ptq_ladder")
def ptq_ladder(p):
    data, model = prepare_data_and_model(p)
    fp32 = model.outputs["model"]
    chosen = step(ptq_ladder_op, p, "INT8 accuracy ladder", model=fp32, dataset=data.outputs["dataset"])
    chosen = chosen.outputs["quantized_model"]
    results = {"fp32": measure(p, fp32, data, name="FP32", fp32_runtimes=CPU_RUNTIMES),
               "ptq_ladder": measure(p, chosen, data, name="INT8 (ladder)", variant="int8-ladder")}
    return summarize(p, results, {"ptq_ladder": chosen}, title="INT8 accuracy ladder")
