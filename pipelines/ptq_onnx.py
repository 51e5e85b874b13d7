"""CPU Post Training Quantization - ONNX Runtime (the spec's parameters and defaults)."""

from visioncompress.components.quantize_onnx.component import quantize_onnx
from visioncompress.pipelines._steps import single_ptq, pipeline


@pipeline("ptq_onnx")
def ptq_onnx(p):
    return single_ptq(p, quantize_onnx, "onnx_ptq", "onnxruntime", title="PTQ - ONNX Runtime",
                      step_name="PTQ ONNX Runtime")
