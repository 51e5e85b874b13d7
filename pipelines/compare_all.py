"""Compare everything: fine-tune once, then every compression side by side in one report.

PTQ for PyTorch, ONNX Runtime and OpenVINO; TensorRT on a GPU node when USE_TENSORRT (off by default,
so the pipeline finishes on clusters without GPUs); QAT for PyTorch and OpenVINO; distillation of
STUDENT_MODEL from the fine-tuned model; structured pruning of the fine-tuned model.
"""

from kfp import dsl

from visioncompress.components.distill.component import distill
from visioncompress.components.prune.component import prune
from visioncompress.components.qat_openvino.component import qat_openvino
from visioncompress.components.qat_torch.component import qat_torch
from visioncompress.components.skipped_results.component import skipped_results
from visioncompress.pipelines._steps import (
    measure, pipeline, prepare_data_and_model, step, summarize, tensorrt_steps,
)
from visioncompress.pipelines.compare import ptq_backends


@pipeline("compare_all")
def compare_all(p):
    data, model = prepare_data_and_model(p)
    fp32, dataset = model.outputs["model"], data.outputs["dataset"]
    outputs = ptq_backends(p, data, fp32)
    args = dict(model=fp32, dataset=dataset)
    outputs["torch_qat"] = step(qat_torch, p, "QAT torch", **args).outputs["quantized_model"]
    outputs["openvino_qat"] = step(qat_openvino, p, "QAT OpenVINO (NNCF)", **args).outputs["quantized_model"]
    outputs["distilled"] = step(distill, p, "distill", dataset=dataset, teacher=fp32, MODEL=p["STUDENT_MODEL"],
                                CUSTOM_MODEL_PATH="").outputs["distilled_model"]
    outputs["pruned"] = step(prune, p, "prune", **args).outputs["pruned_model"]
    variants = {"torch_qat": "qat-int8", "openvino_qat": "qat-int8", "distilled": "distilled", "pruned": "pruned"}
    results = {name: measure(p, out, data, name=name.replace("_", " "), variant=variants.get(name, ""))
               for name, out in outputs.items()}
    with dsl.If(p["USE_TENSORRT"] == True, name="tensorrt-requested"):  # noqa: E712 - a pipeline condition
        tensorrt = tensorrt_steps(p, fp32, data)[2]
    with dsl.Else(name="tensorrt-not-requested"):
        skipped = step(skipped_results, p, "TensorRT not requested",
                       NOTICE="the TensorRT branch runs only with USE_TENSORRT=True").outputs["results"]
    results["tensorrt_ptq"] = dsl.OneOf(tensorrt, skipped)
    results["fp32"] = measure(p, fp32, data, name="FP32", fp32_runtimes=["torch", "onnxruntime", "openvino"])
    return summarize(p, results, outputs, title="Every compression compared")
