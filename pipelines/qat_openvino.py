"""CPU Quantization Aware Training - OpenVINO via NNCF, the spec's parameters and defaults."""

from kfp import dsl
from kfp.dsl import Markdown

from components.qat_openvino.component import qat_openvino as qat_openvino_op
from pipelines._steps import measure, pick, prepare_data_and_model, summarize
from pipelines.placement import on_cpu

QAT_PARAMS = ("QAT_EPOCHS", "QAT_LEARNING_RATE", "BATCH_SIZE", "TRANSFORMER", "SUBSET_SIZE", "VALIDATE",
              "VALIDATION_INTERVAL", "CRITERION", "OPTIMIZER", "SEED")


def qat_openvino_steps(params: dict, *, title: str, step_name: str):
    """Data, FP32 model, NNCF QAT and the comparison; shared with the detection pipeline."""
    data, model = prepare_data_and_model(params)
    qat = on_cpu(qat_openvino_op(model=model.outputs["model"], dataset=data.outputs["dataset"],
                                 **pick(params, QAT_PARAMS))).set_display_name(step_name)
    batch_size = params["BATCH_SIZE"]
    results = dict(
        fp32=measure(model.outputs["model"], data, BATCH_SIZE=batch_size, name="FP32", fp32_runtimes=["openvino"]),
        openvino_qat=measure(qat.outputs["quantized_model"], data, BATCH_SIZE=batch_size,
                             name="OpenVINO QAT INT8", variant="qat-int8"),
    )
    return summarize(params, results, {"openvino_qat": qat.outputs["quantized_model"]}, title=title)


@dsl.pipeline(name="visioncompress-qat-openvino",
              description="Prepare data, fine-tune, OpenVINO INT8 quantization-aware training with NNCF, "
                          "benchmark against FP32.")
def qat_openvino(
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
    QAT_EPOCHS: int = 1,
    QAT_LEARNING_RATE: float = 0.0001,
    SUBSET_SIZE: int = 300,
    SEED: int = 43,
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
    return qat_openvino_steps(locals(), title="QAT - OpenVINO (NNCF)", step_name="QAT OpenVINO (NNCF)")
