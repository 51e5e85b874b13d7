"""GPU Post Training Quantization - TensorRT: QDQ calibration on a CPU node, engine and benchmark on GPU."""

from visioncompress.pipelines._steps import measure, pipeline, prepare_data_and_model, summarize, tensorrt_steps


@pipeline("ptq_tensorrt")
def ptq_tensorrt(p):
    data, model = prepare_data_and_model(p)
    fp32 = model.outputs["model"]
    qdq, engine, tensorrt_results = tensorrt_steps(p, fp32, data)
    results = dict(
        fp32=measure(p, fp32, data, name="FP32", fp32_runtimes=["onnxruntime"]),
        # The engine's own input, measured in onnxruntime on CPU: the calibrated model's accuracy, GPU or not.
        onnx_ptq=measure(p, qdq.outputs["qdq_model"], data, name="QDQ ONNX INT8", variant="int8-qdq"),
        tensorrt_ptq=tensorrt_results,
    )
    return summarize(p, results, {"tensorrt_ptq": engine.outputs["engine"]}, title="PTQ - TensorRT")
