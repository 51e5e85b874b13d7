"""Object detection: Knowledge Distillation with feature KD (METHOD pkd or cwd on FPN levels)."""

from kfp import dsl
from kfp.dsl import Markdown

from pipelines.distill import distill_steps


@dsl.pipeline(name="visioncompress-detect-distill",
              description="Detection: prepare COCO data; the student trained alone (baseline) and distilled from "
                          "the teacher's FPN features (PKD or CWD).")
def detect_distill(
    insize: int = 128,
    BATCH_SIZE: int = 8,
    TRAINING: bool = True,
    VALIDATE: bool = True,
    VALIDATION_INTERVAL: int = 1,
    LEARNING_RATE: float = 0.001,
    FINETUNE_EPOCHS: int = 1,
    OPTIMIZER: str = "Adam",
    PRETRAINED: bool = False,
    TEACHER_MODEL: str = "fcos_resnet34_fpn",
    CUSTOM_TEACHER_PATH: str = "",
    METHOD: str = "pkd",
    EPOCHS: int = 20,
    LR: float = 0.01,
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
    return distill_steps(locals(), title="Detection Knowledge Distillation", step_name="distill (detection)")
