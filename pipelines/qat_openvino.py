"""CPU Quantization Aware Training - OpenVINO via NNCF, the spec's parameters and defaults."""

from visioncompress.components.qat_openvino.component import qat_openvino as qat_openvino_op
from visioncompress.pipelines._steps import single_ptq, pipeline


@pipeline("qat_openvino")
def qat_openvino(p):
    return single_ptq(p, qat_openvino_op, "openvino_qat", "openvino", title="QAT - OpenVINO (NNCF)",
                      step_name="QAT OpenVINO (NNCF)", variant="qat-int8")
