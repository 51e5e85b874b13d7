"""Knowledge Distillation (classification): a student (MODEL) learns from a teacher's softened logits."""

from kfp import dsl
from kfp.dsl import Markdown

from components.distill.component import distill as distill_op
from pipelines._steps import measure, pick, prepare_data_and_model, summarize
from pipelines.placement import on_cpu
from pipelines.publish_step import with_storage_access

DISTILL_PARAMS = ("MODEL", "PRETRAINED", "CUSTOM_MODEL_PATH", "TEACHER_MODEL", "CUSTOM_TEACHER_PATH", "METHOD", "EPOCHS",
                  "LR", "LAMBDA", "TEMPERATURE", "WEIGHT_DECAY", "TRAINING", "VALIDATE", "VALIDATION_INTERVAL",
                  "CRITERION", "LEARNING_RATE", "FINETUNE_EPOCHS", "OPTIMIZER", "BATCH_SIZE", "SEED")


def distill_steps(params: dict, *, title: str, step_name: str):
    """Data, the student alone (baseline), the distilled student and the comparison; shared with detection."""
    data, model = prepare_data_and_model(params)
    student = on_cpu(distill_op(dataset=data.outputs["dataset"], **pick(params, DISTILL_PARAMS)))
    student.set_display_name(step_name)
    with_storage_access(student, optional=True)  # CUSTOM_TEACHER_PATH may be s3:// or minio://
    batch_size = params["BATCH_SIZE"]
    results = dict(
        fp32=measure(model.outputs["model"], data, BATCH_SIZE=batch_size, name="FP32 (student alone)",
                     fp32_runtimes=["torch"]),
        distilled=measure(student.outputs["distilled_model"], data, BATCH_SIZE=batch_size, name="distilled",
                          variant="distilled"),
    )
    return summarize(params, results, {"distilled": student.outputs["distilled_model"]}, title=title)


@dsl.pipeline(name="visioncompress-distill",
              description="Prepare data; the student fine-tuned alone (baseline) and distilled from the teacher.")
def distill(
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
    TEACHER_MODEL: str = "vgg16",
    CUSTOM_TEACHER_PATH: str = "",
    METHOD: str = "pkd",
    EPOCHS: int = 20,
    LR: float = 0.01,
    LAMBDA: float = 0.5,
    TEMPERATURE: float = 20,
    SEED: int = 43,
    WEIGHT_DECAY: float = 0.0005,
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
    return distill_steps(locals(), title="Knowledge Distillation", step_name="distill")
