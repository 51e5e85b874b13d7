"""Object detection: CPU Quantization Aware Training - OpenVINO via NNCF."""

from kfp import dsl
from kfp.dsl import Markdown

from components.qat_openvino.component import qat_openvino as qat_openvino_op
from pipelines._steps import measure, pick, prepare_data_and_model, summarize
from pipelines.placement import on_cpu

QAT_PARAMS = ("QAT_EPOCHS", "QAT_LEARNING_RATE", "BATCH_SIZE", "TRANSFORMER", "SUBSET_SIZE", "VALIDATE",
              "VALIDATION_INTERVAL", "OPTIMIZER", "SEED")


@dsl.pipeline(name="visioncompress-detect-qat-openvino",
              description="Detection: prepare COCO data, fine-tune a detector, OpenVINO INT8 QAT with NNCF, "
                          "mAP and latency against FP32.")
def detect_qat_openvino(
    insize: int = 128,
    BATCH_SIZE: int = 8,
    TRAINING: bool = True,
    VALIDATE: bool = True,
    VALIDATION_INTERVAL: int = 1,
    LEARNING_RATE: float = 0.001,
    FINETUNE_EPOCHS: int = 1,
    OPTIMIZER: str = "Adam",
    PRETRAINED: bool = False,
    TRANSFORMER: bool = False,
    QAT_EPOCHS: int = 1,
    QAT_LEARNING_RATE: float = 0.0001,
    SUBSET_SIZE: int = 128,
    SEED: int = 43,
    MODEL: str = "fcos_resnet18_fpn",
    CUSTOM_MODEL_PATH: str = "",
    DATASET_SOURCE: str = "fashion-mnist-detection",
    DATASET_PATH: str = "",
    MAX_TRAIN_SAMPLES: int = 0,
    MAX_TEST_SAMPLES: int = 0,
    CALIBRATION_SAMPLES: int = 128,
    DESTINATION: str = "",
    ACCURACY_BUDGET: float = 1.0,
    RUN_DATE: str = "",
) -> Markdown:
    data, model = prepare_data_and_model(locals())
    qat = on_cpu(qat_openvino_op(model=model.outputs["model"], dataset=data.outputs["dataset"],
                                 **pick(locals(), QAT_PARAMS))).set_display_name("QAT OpenVINO (NNCF, detector core)")
    results = dict(
        fp32=measure(model.outputs["model"], data, BATCH_SIZE=BATCH_SIZE, name="FP32", fp32_runtimes=["openvino"]),
        openvino_qat=measure(qat.outputs["quantized_model"], data, BATCH_SIZE=BATCH_SIZE,
                             name="OpenVINO QAT INT8", variant="qat-int8"),
    )
    return summarize(locals(), results, {"openvino_qat": qat.outputs["quantized_model"]},
                     title="Detection QAT - OpenVINO (NNCF)")
