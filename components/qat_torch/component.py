from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def qat_torch(
    model: Input[Model],
    dataset: Input[Dataset],
    quantized_model: Output[Model],
    metrics: Output[Metrics],
    QAT_EPOCHS: int = 1,
    QAT_LEARNING_RATE: float = 0.0001,
    BATCH_SIZE: int = 1,
    VALIDATE: bool = True,
    VALIDATION_INTERVAL: int = 1,
    CRITERION: str = "CrossEntropyLoss",
    OPTIMIZER: str = "Adam",
    SEED: int = 43,
):
    """PyTorch CPU quantization-aware training (FX, x86 engine); the INT8 output loads with torch.jit.load."""
    from visioncompress.config import TrainConfig, config_from
    from visioncompress.config.qat import TorchQATConfig
    from visioncompress.kfp_io import describe_model, log_training, stage
    from visioncompress.quantize.qat_torch import qat_torch as run_qat

    with stage("qat_torch"):
        config = config_from(TorchQATConfig, locals())
        train_config = config_from(TrainConfig, locals())
        result = run_qat(model.path, dataset.path, quantized_model.path, config, train_config,
                         checkpoint_dir=quantized_model.path + ".checkpoints")
        describe_model(quantized_model, result)
        log_training(metrics, result.metrics)
