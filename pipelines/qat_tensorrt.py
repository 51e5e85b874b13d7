"""GPU Quantization Aware Training - TensorRT (nyuntam's TensorRTQAT): QAT and its QDQ ONNX export on a CPU node,
engine and benchmark on GPU."""

from visioncompress.pipelines._steps import pipeline, tensorrt_ptq


@pipeline("qat_tensorrt")
def qat_tensorrt(p):
    return tensorrt_ptq(p, title="QAT - TensorRT", qdq_name="QAT QDQ ONNX INT8", qat=True)
