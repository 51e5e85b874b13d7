from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def prune_detection(
    model: Input[Model],
    dataset: Input[Dataset],
    pruned_model: Output[Model],
    metrics: Output[Metrics],
    INTERVAL: int = 10,
    NORM_TYPE: str = "act",
    LR_RATIO: float = 0.1,
    TARGET_FLOP_RATIO: float = 0.5,
    EPOCHS: int = 20,
    VALIDATE: bool = True,
    VALIDATION_INTERVAL: int = 1,
    LEARNING_RATE: float = 0.001,
    OPTIMIZER: str = "Adam",
    BATCH_SIZE: int = 1,
    SEED: int = 43,
):
    """GroupFisher structured pruning of a detector while it trains; the output loads with torch.load."""
    from visioncompress.config import GroupFisherConfig, TrainConfig, config_from
    from visioncompress.detection.prune import prune_detector
    from visioncompress.kfp_io import describe_model, log_metrics, stage

    with stage("prune_detection"):
        config = config_from(GroupFisherConfig, locals())
        train_config = config_from(TrainConfig, locals())
        result = prune_detector(model.path, dataset.path, pruned_model.path, config, train_config,
                                checkpoint_dir=pruned_model.path + ".checkpoints")
        describe_model(pruned_model, result)
        log_metrics(metrics, result.metrics)
