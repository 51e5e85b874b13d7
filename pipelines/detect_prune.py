"""Object detection: Structured Pruning with GroupFisher (the spec's detection pruning table)."""

from kfp import dsl
from kfp.dsl import Markdown

from components.prune_detection.component import prune_detection
from pipelines._steps import measure, pick, prepare_data_and_model, summarize
from pipelines.placement import on_cpu

PRUNE_PARAMS = ("INTERVAL", "NORM_TYPE", "LR_RATIO", "TARGET_FLOP_RATIO", "EPOCHS", "VALIDATE", "VALIDATION_INTERVAL",
                "LEARNING_RATE", "OPTIMIZER", "BATCH_SIZE", "SEED")


@dsl.pipeline(name="visioncompress-detect-prune",
              description="Detection: prepare COCO data, fine-tune a detector, GroupFisher pruning to "
                          "TARGET_FLOP_RATIO while training, mAP and latency against FP32.")
def detect_prune(
    insize: int = 128,
    BATCH_SIZE: int = 8,
    TRAINING: bool = True,
    VALIDATE: bool = True,
    VALIDATION_INTERVAL: int = 1,
    LEARNING_RATE: float = 0.001,
    FINETUNE_EPOCHS: int = 1,
    OPTIMIZER: str = "Adam",
    PRETRAINED: bool = False,
    INTERVAL: int = 10,
    NORM_TYPE: str = "act",
    LR_RATIO: float = 0.1,
    TARGET_FLOP_RATIO: float = 0.5,
    EPOCHS: int = 20,
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
    data, model = prepare_data_and_model(locals())
    pruned = on_cpu(prune_detection(model=model.outputs["model"], dataset=data.outputs["dataset"],
                                    **pick(locals(), PRUNE_PARAMS))).set_display_name("GroupFisher pruning")
    results = dict(
        fp32=measure(model.outputs["model"], data, BATCH_SIZE=BATCH_SIZE, name="FP32"),
        pruned=measure(pruned.outputs["pruned_model"], data, BATCH_SIZE=BATCH_SIZE, name="pruned",
                       variant="pruned"),
    )
    return summarize(locals(), results, {"pruned": pruned.outputs["pruned_model"]},
                     title="Detection Structured Pruning - GroupFisher")
