"""GPU Post Training Quantization - TensorRT: QDQ calibration on a CPU node, engine and benchmark on GPU."""

from visioncompress.pipelines._steps import pipeline, tensorrt_ptq


@pipeline("ptq_tensorrt")
def ptq_tensorrt(p):
    return tensorrt_ptq(p, title="PTQ - TensorRT", qdq_name="QDQ ONNX INT8")
