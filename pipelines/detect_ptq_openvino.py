"""Object detection: CPU Post Training Quantization - OpenVINO via NNCF (the end-to-end detector, NMS inside)."""

from visioncompress.components.quantize_openvino.component import quantize_openvino
from visioncompress.pipelines._steps import single_ptq, pipeline


@pipeline("detect_ptq_openvino")
def detect_ptq_openvino(p):
    return single_ptq(p, quantize_openvino, "openvino_ptq", "openvino", title="Detection PTQ - OpenVINO (NNCF)",
                      step_name="PTQ OpenVINO (NNCF, end-to-end detector)")
