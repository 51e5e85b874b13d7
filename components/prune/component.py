from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def prune(
    model: Input[Model],
    dataset: Input[Dataset],
    pruned_model: Output[Model],
    metrics: Output[Metrics],
    PRUNER_NAME: str = "GroupNormPruner",
    GROUP_IMPORTANCE: str = "GroupNormImportance",
    TARGET_PRUNE_RATE: float = 0.5,
    BOTTLENECK: bool = False,
    PRUNE_NUM_HEADS: bool = True,
    ITERATIVE_STEPS: int = 1,
    SPARSITY_EPOCHS: int = 0,
    TRAINING: bool = True,
    VALIDATE: bool = True,
    VALIDATION_INTERVAL: int = 1,
    CRITERION: str = "CrossEntropyLoss",
    LEARNING_RATE: float = 0.001,
    FINETUNE_EPOCHS: int = 1,
    OPTIMIZER: str = "Adam",
    BATCH_SIZE: int = 1,
    SEED: int = 43,
):
    """Structured pruning (torch-pruning) of the FP32 model, then optional fine-tuning; loads with torch.load."""
    from visioncompress.config import TrainConfig, config_from
    from visioncompress.config.prune import PruneConfig
    from visioncompress.kfp_io import describe_model, log_metrics, stage
    from visioncompress.prune import prune as run_prune

    with stage("prune"):
        config = config_from(PruneConfig, locals())
        train_config = config_from(TrainConfig, locals())
        result = run_prune(model.path, dataset.path, pruned_model.path, config, train_config,
                           checkpoint_dir=pruned_model.path + ".checkpoints")
        describe_model(pruned_model, result)
        log_metrics(metrics, result.metrics)  # the scalars; per-epoch history stays in model.json
