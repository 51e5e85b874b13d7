"""Object detection: GPU Post Training Quantization - TensorRT: the end-to-end QDQ ONNX (NMS inside) calibrated
on a CPU node; the INT8 engine (TensorRT's NMS layer inside) built and benchmarked on a GPU node."""

from visioncompress.pipelines._steps import measure, pipeline, prepare_data_and_model, summarize, tensorrt_steps


@pipeline("detect_ptq_tensorrt")
def detect_ptq_tensorrt(p):
    data, model = prepare_data_and_model(p)
    fp32 = model.outputs["model"]
    qdq, engine, tensorrt_results = tensorrt_steps(p, fp32, data)
    results = dict(
        fp32=measure(p, fp32, data, name="FP32", fp32_runtimes=["onnxruntime"]),
        # The engine's own input, measured in onnxruntime on CPU: the calibrated detector's mAP, GPU or not.
        onnx_ptq=measure(p, qdq.outputs["qdq_model"], data, name="QDQ ONNX INT8 (end to end)", variant="int8-qdq"),
        tensorrt_ptq=tensorrt_results,
    )
    return summarize(p, results, {"tensorrt_ptq": engine.outputs["engine"]}, title="Detection PTQ - TensorRT")
