"""Object detection: CPU Post Training Quantization - ONNX Runtime (the end-to-end detector, NMS inside)."""

from visioncompress.components.quantize_onnx.component import quantize_onnx
from visioncompress.pipelines._steps import single_ptq, pipeline


@pipeline("detect_ptq_onnx")
def detect_ptq_onnx(p):
    return single_ptq(p, quantize_onnx, "onnx_ptq", "onnxruntime", title="Detection PTQ - ONNX Runtime",
                      step_name="PTQ ONNX Runtime (end-to-end detector)")
