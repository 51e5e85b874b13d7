"""GPU Post Training Quantization - TensorRT (the spec's parameters and defaults).

Calibration (QDQ ONNX) runs on CPU nodes; the engine build and the GPU benchmark run on GPU nodes.
"""

from kfp import dsl
from kfp.dsl import Markdown

from pipelines._steps import measure, prepare_data_and_model, summarize
from pipelines._tensorrt_steps import tensorrt_steps


@dsl.pipeline(name="visioncompress-ptq-tensorrt",
              description="Prepare data, fine-tune, calibrated QDQ ONNX on CPU, TensorRT INT8 engine and "
                          "benchmark on GPU, compared with FP32.")
def ptq_tensorrt(
    insize: int = 32,
    BATCH_SIZE: int = 1,
    TRAINING: bool = True,
    VALIDATE: bool = True,
    VALIDATION_INTERVAL: int = 1,
    CRITERION: str = "CrossEntropyLoss",
    LEARNING_RATE: float = 0.001,
    FINETUNE_EPOCHS: int = 1,
    OPTIMIZER: str = "Adam",
    PRETRAINED: bool = False,
    FP16_FALLBACK: bool = True,
    DYNAMIC_BATCH: bool = False,
    MAX_BATCH_SIZE: int = 32,
    WORKSPACE_MB: int = 1024,
    CALIBRATION_BATCH_SIZE: int = 32,
    CALIBRATION_METHOD: str = "MinMax",
    TENSORRT_OPTIONAL: bool = False,
    MODEL: str = "resnet18",
    CUSTOM_MODEL_PATH: str = "",
    DATASET_SOURCE: str = "fashion-mnist",
    DATASET_NAME: str = "",
    DATASET_PATH: str = "",
    MAX_TRAIN_SAMPLES: int = 0,
    MAX_TEST_SAMPLES: int = 0,
    CALIBRATION_SAMPLES: int = 512,
    DESTINATION: str = "",
    ACCURACY_BUDGET: float = 1.0,
    RUN_DATE: str = "",
    PUBLISH_OVER_BUDGET: bool = False,
    KEEP_LAST: int = 0,
) -> Markdown:
    data, model = prepare_data_and_model(locals())
    fp32 = model.outputs["model"]
    qdq, engine, tensorrt_results = tensorrt_steps(
        fp32, data, BATCH_SIZE=BATCH_SIZE, FP16_FALLBACK=FP16_FALLBACK, DYNAMIC_BATCH=DYNAMIC_BATCH,
        MAX_BATCH_SIZE=MAX_BATCH_SIZE, WORKSPACE_MB=WORKSPACE_MB, CALIBRATION_BATCH_SIZE=CALIBRATION_BATCH_SIZE,
        CALIBRATION_METHOD=CALIBRATION_METHOD, TENSORRT_OPTIONAL=TENSORRT_OPTIONAL)
    results = dict(
        fp32=measure(fp32, data, BATCH_SIZE=BATCH_SIZE, name="FP32", fp32_runtimes=["onnxruntime"]),
        # The engine's own input, measured in onnxruntime on CPU: the calibrated model's accuracy, GPU or not.
        onnx_ptq=measure(qdq.outputs["qdq_model"], data, BATCH_SIZE=BATCH_SIZE, name="QDQ ONNX INT8",
                         variant="int8-qdq"),
        tensorrt_ptq=tensorrt_results,
    )
    return summarize(locals(), results, {"tensorrt_ptq": engine.outputs["engine"]}, title="PTQ - TensorRT")
