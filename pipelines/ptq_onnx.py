"""CPU Post Training Quantization - ONNX (the spec's parameters and defaults)."""

from kfp import dsl
from kfp.dsl import Markdown

from components.quantize_onnx.component import quantize_onnx
from pipelines._steps import measure, pick, prepare_data_and_model, summarize
from pipelines.placement import on_cpu

ONNX_PARAMS = ("quant_format", "per_channel", "activation_type", "weight_type", "BATCH_SIZE")


def onnx_ptq_steps(params: dict, *, title: str, step_name: str):
    """Data, FP32 model, ONNX Runtime PTQ and the comparison; shared with the detection pipeline."""
    data, model = prepare_data_and_model(params)
    quantized = on_cpu(quantize_onnx(model=model.outputs["model"], dataset=data.outputs["dataset"],
                                     **pick(params, ONNX_PARAMS))).set_display_name(step_name)
    batch_size = params["BATCH_SIZE"]
    results = dict(
        fp32=measure(model.outputs["model"], data, BATCH_SIZE=batch_size, name="FP32",
                     fp32_runtimes=["onnxruntime"]),
        onnx_ptq=measure(quantized.outputs["quantized_model"], data, BATCH_SIZE=batch_size, name="ONNX INT8"),
    )
    return summarize(params, results, {"onnx_ptq": quantized.outputs["quantized_model"]}, title=title)


@dsl.pipeline(name="visioncompress-ptq-onnx",
              description="Prepare data, fine-tune, ONNX Runtime static INT8 PTQ, benchmark against FP32.")
def ptq_onnx(
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
    quant_format: str = "QuantFormat.QDQ",
    per_channel: bool = False,
    activation_type: str = "QuantType.QInt8",
    weight_type: str = "QuantType.QInt8",
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
    return onnx_ptq_steps(locals(), title="PTQ - ONNX Runtime", step_name="PTQ ONNX Runtime")
