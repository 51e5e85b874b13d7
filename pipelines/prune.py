"""Structured Pruning (classification) with torch-pruning, fine-tuned after pruning when TRAINING."""

from kfp import dsl
from kfp.dsl import Markdown

from components.prune.component import prune as prune_op
from pipelines._steps import measure, pick, prepare_data_and_model, summarize
from pipelines.placement import on_cpu

PRUNE_PARAMS = ("PRUNER_NAME", "GROUP_IMPORTANCE", "TARGET_PRUNE_RATE", "BOTTLENECK", "PRUNE_NUM_HEADS",
                "ITERATIVE_STEPS", "SPARSITY_EPOCHS", "TRAINING", "VALIDATE", "VALIDATION_INTERVAL", "CRITERION",
                "LEARNING_RATE", "FINETUNE_EPOCHS", "OPTIMIZER", "BATCH_SIZE", "SEED")


@dsl.pipeline(name="visioncompress-prune",
              description="Prepare data, fine-tune, structured pruning (torch-pruning), benchmark against FP32.")
def prune(
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
    PRUNER_NAME: str = "GroupNormPruner",
    GROUP_IMPORTANCE: str = "GroupNormImportance",
    TARGET_PRUNE_RATE: float = 0.5,
    BOTTLENECK: bool = False,
    PRUNE_NUM_HEADS: bool = True,
    ITERATIVE_STEPS: int = 1,
    SPARSITY_EPOCHS: int = 0,
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
    data, model = prepare_data_and_model(locals())
    pruned = on_cpu(prune_op(model=model.outputs["model"], dataset=data.outputs["dataset"],
                             **pick(locals(), PRUNE_PARAMS)))
    pruned.set_display_name("prune")
    results = dict(
        fp32=measure(model.outputs["model"], data, BATCH_SIZE=BATCH_SIZE, name="FP32", fp32_runtimes=["torch"]),
        pruned=measure(pruned.outputs["pruned_model"], data, BATCH_SIZE=BATCH_SIZE, name="pruned",
                       variant="pruned"),
    )
    return summarize(locals(), results, {"pruned": pruned.outputs["pruned_model"]}, title="Structured Pruning")
