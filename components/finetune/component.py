from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def finetune(
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    MODEL: str = "resnet18",
    PRETRAINED: bool = False,
    CUSTOM_MODEL_PATH: str = "",
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
    """Build (or load) a classifier and optionally fine-tune it; writes the FP32 model artifact."""
    from visioncompress.config import ModelConfig, TrainConfig, config_from
    from visioncompress.kfp_io import describe_model, log_training, stage
    from visioncompress.train import finetune as run_finetune

    with stage("finetune"):
        model_config = config_from(ModelConfig, locals())
        train_config = config_from(TrainConfig, locals())
        result = run_finetune(dataset.path, model.path, model_config, train_config,
                              checkpoint_dir=model.path + ".checkpoints")
        describe_model(model, result)
        log_training(metrics, result.metrics)
