"""Object detection: CPU Quantization Aware Training - OpenVINO via NNCF."""

from kfp import dsl
from kfp.dsl import Markdown

from pipelines.qat_openvino import qat_openvino_steps


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
    PUBLISH_OVER_BUDGET: bool = False,
    KEEP_LAST: int = 0,
) -> Markdown:
    return qat_openvino_steps(locals(), title="Detection QAT - OpenVINO (NNCF)",
                              step_name="QAT OpenVINO (NNCF, detector core)")
