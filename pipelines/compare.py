"""Compare: prepare data and fine-tune once, then the CPU PTQ backends side by side in one report."""

from kfp import dsl
from kfp.dsl import Markdown

from components.quantize_onnx.component import quantize_onnx
from components.quantize_openvino.component import quantize_openvino
from components.quantize_torch.component import quantize_torch
from pipelines._steps import measure, prepare_data_and_model, summarize
from pipelines.placement import on_cpu


@dsl.pipeline(name="visioncompress-compare",
              description="Fine-tune once; PyTorch, ONNX Runtime and OpenVINO INT8 PTQ; one comparison report.")
def compare(
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
    choice: str = "static",
    quant_format: str = "QuantFormat.QDQ",
    per_channel: bool = False,
    activation_type: str = "QuantType.QInt8",
    weight_type: str = "QuantType.QInt8",
    TRANSFORMER: bool = True,
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
    fp32, dataset = model.outputs["model"], data.outputs["dataset"]
    torch_q = on_cpu(quantize_torch(model=fp32, dataset=dataset, choice=choice, BATCH_SIZE=BATCH_SIZE))
    onnx_q = on_cpu(quantize_onnx(model=fp32, dataset=dataset, quant_format=quant_format, per_channel=per_channel,
                                  activation_type=activation_type, weight_type=weight_type, BATCH_SIZE=BATCH_SIZE))
    openvino_q = on_cpu(quantize_openvino(model=fp32, dataset=dataset, TRANSFORMER=TRANSFORMER))
    torch_q.set_display_name("PTQ torch")
    onnx_q.set_display_name("PTQ ONNX Runtime")
    openvino_q.set_display_name("PTQ OpenVINO (NNCF)")
    results = dict(
        fp32=measure(fp32, data, BATCH_SIZE=BATCH_SIZE, name="FP32",
                     fp32_runtimes=["torch", "onnxruntime", "openvino"]),
        torch_ptq=measure(torch_q.outputs["quantized_model"], data, BATCH_SIZE=BATCH_SIZE, name="torch INT8"),
        onnx_ptq=measure(onnx_q.outputs["quantized_model"], data, BATCH_SIZE=BATCH_SIZE, name="ONNX INT8"),
        openvino_ptq=measure(openvino_q.outputs["quantized_model"], data, BATCH_SIZE=BATCH_SIZE,
                             name="OpenVINO INT8"),
    )
    models = {"torch_ptq": torch_q.outputs["quantized_model"], "onnx_ptq": onnx_q.outputs["quantized_model"],
              "openvino_ptq": openvino_q.outputs["quantized_model"]}
    return summarize(locals(), results, models, title="CPU PTQ backends compared")
