"""Object detection: Knowledge Distillation with feature KD (METHOD pkd or cwd on FPN levels)."""

from kfp import dsl
from kfp.dsl import Markdown

from components.distill.component import distill as distill_op
from pipelines._steps import measure, pick, prepare_data_and_model, summarize
from pipelines.placement import on_cpu
from pipelines.publish_step import with_storage_access

DISTILL_PARAMS = ("MODEL", "PRETRAINED", "CUSTOM_MODEL_PATH", "TEACHER_MODEL", "CUSTOM_TEACHER_PATH", "METHOD", "EPOCHS",
                  "LR", "TRAINING", "VALIDATE", "VALIDATION_INTERVAL", "LEARNING_RATE", "FINETUNE_EPOCHS", "OPTIMIZER",
                  "BATCH_SIZE", "SEED")


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
) -> Markdown:
    data, model = prepare_data_and_model(locals())
    student = on_cpu(distill_op(dataset=data.outputs["dataset"], **pick(locals(), DISTILL_PARAMS)))
    student.set_display_name("distill (detection)")
    with_storage_access(student, optional=True)  # CUSTOM_TEACHER_PATH may be s3:// or minio://
    results = dict(
        fp32=measure(model.outputs["model"], data, BATCH_SIZE=BATCH_SIZE, name="FP32 (student alone)"),
        distilled=measure(student.outputs["distilled_model"], data, BATCH_SIZE=BATCH_SIZE, name="distilled",
                          variant="distilled"),
    )
    return summarize(locals(), results, {"distilled": student.outputs["distilled_model"]},
                     title="Detection Knowledge Distillation")
