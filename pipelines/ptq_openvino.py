"""CPU Post Training Quantization - OpenVINO via NNCF (the spec's parameters and defaults)."""

from visioncompress.components.quantize_openvino.component import quantize_openvino
from visioncompress.pipelines._steps import single_ptq, pipeline


@pipeline("ptq_openvino")
def ptq_openvino(p):
    return single_ptq(p, quantize_openvino, "openvino_ptq", "openvino", title="PTQ - OpenVINO (NNCF)",
                      step_name="PTQ OpenVINO (NNCF)")
