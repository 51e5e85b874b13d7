"""Compare: prepare data and fine-tune once, then the CPU PTQ backends side by side in one report."""

from visioncompress.components.quantize_onnx.component import quantize_onnx
from visioncompress.components.quantize_openvino.component import quantize_openvino
from visioncompress.components.quantize_torch.component import quantize_torch
from visioncompress.pipelines._steps import measure, pipeline, prepare_data_and_model, step, summarize


def ptq_backends(p, data, fp32):
    """PTQ on the three CPU backends: {publish name: quantized model}."""
    args = dict(model=fp32, dataset=data.outputs["dataset"])
    return {
        "torch_ptq": step(quantize_torch, p, "PTQ torch", **args).outputs["quantized_model"],
        "onnx_ptq": step(quantize_onnx, p, "PTQ ONNX Runtime", **args).outputs["quantized_model"],
        "openvino_ptq": step(quantize_openvino, p, "PTQ OpenVINO (NNCF)", **args).outputs["quantized_model"],
    }


@pipeline("compare")
def compare(p):
    data, model = prepare_data_and_model(p)
    fp32 = model.outputs["model"]
    models = ptq_backends(p, data, fp32)
    results = {name: measure(p, out, data, name=name.replace("_", " ")) for name, out in models.items()}
    results["fp32"] = measure(p, fp32, data, name="FP32", fp32_runtimes=["torch", "onnxruntime", "openvino"])
    return summarize(p, results, models, title="CPU PTQ backends compared")
