from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def distill(
    dataset: Input[Dataset],
    distilled_model: Output[Model],
    metrics: Output[Metrics],
    teacher: Input[Model] = None,
    MODEL: str = "resnet18",
    PRETRAINED: bool = False,
    CUSTOM_MODEL_PATH: str = "",
    TEACHER_MODEL: str = "vgg16",
    CUSTOM_TEACHER_PATH: str = "",
    METHOD: str = "pkd",
    EPOCHS: int = 20,
    LR: float = 0.01,
    LAMBDA: float = 0.5,
    TEMPERATURE: float = 20,
    WEIGHT_DECAY: float = 0.0005,
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
    """Knowledge distillation: trains the student (MODEL) on labels and the teacher's softened logits."""
    from visioncompress.config import ModelConfig, TrainConfig, config_from
    from visioncompress.config.distill import DistillConfig
    from visioncompress.distill import distill as run_distill
    from visioncompress.kfp_io import describe_model, log_metrics, stage

    with stage("distill"):
        student = config_from(ModelConfig, locals())
        train_config = config_from(TrainConfig, locals())
        config = config_from(DistillConfig, locals())
        result = run_distill(dataset.path, distilled_model.path, student, train_config, config,
                             teacher_dir=teacher.path if teacher is not None else None,
                             checkpoint_dir=distilled_model.path + ".checkpoints")
        describe_model(distilled_model, result)
        log_metrics(metrics, result.metrics)  # the scalars; per-epoch history stays in model.json
