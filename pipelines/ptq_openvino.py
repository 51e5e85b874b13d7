"""CPU Post Training Quantization - OpenVINO via NNCF (the spec's parameters and defaults)."""

from kfp import dsl
from kfp.dsl import Markdown

from components.quantize_openvino.component import quantize_openvino
from pipelines._steps import measure, prepare_data_and_model, summarize
from pipelines.placement import on_cpu


@dsl.pipeline(name="visioncompress-ptq-openvino",
              description="Prepare data, fine-tune, OpenVINO INT8 PTQ with NNCF, benchmark against FP32.")
def ptq_openvino(
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
    quantized = on_cpu(quantize_openvino(model=model.outputs["model"], dataset=data.outputs["dataset"],
                                         TRANSFORMER=TRANSFORMER)).set_display_name("PTQ OpenVINO (NNCF)")
    results = dict(
        fp32=measure(model.outputs["model"], data, BATCH_SIZE=BATCH_SIZE, name="FP32", fp32_runtimes=["openvino"]),
        openvino_ptq=measure(quantized.outputs["quantized_model"], data, BATCH_SIZE=BATCH_SIZE,
                             name="OpenVINO INT8"),
    )
    return summarize(locals(), results, {"openvino_ptq": quantized.outputs["quantized_model"]}, title="PTQ - OpenVINO (NNCF)")
