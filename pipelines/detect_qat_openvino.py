"""Object detection: CPU Quantization Aware Training - OpenVINO via NNCF (the end-to-end detector, NMS inside)."""

from visioncompress.components.qat_openvino.component import qat_openvino
from visioncompress.pipelines._steps import single_ptq, pipeline


@pipeline("detect_qat_openvino")
def detect_qat_openvino(p):
    return single_ptq(p, qat_openvino, "openvino_qat", "openvino", title="Detection QAT - OpenVINO (NNCF)",
                      step_name="QAT OpenVINO (NNCF, end-to-end detector)", variant="qat-int8")
