"""Object detection: GPU Post Training Quantization - TensorRT: the end-to-end QDQ ONNX (NMS inside) calibrated
on a CPU node; the INT8 engine (TensorRT's NMS layer inside) built and benchmarked on a GPU node."""

from visioncompress.pipelines._steps import pipeline, tensorrt_ptq


@pipeline("detect_ptq_tensorrt")
def detect_ptq_tensorrt(p):
    return tensorrt_ptq(p, title="Detection PTQ - TensorRT", qdq_name="QDQ ONNX INT8 (end to end)")
