from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def qat_openvino(
    model: Input[Model],
    dataset: Input[Dataset],
    quantized_model: Output[Model],
    metrics: Output[Metrics],
    QAT_EPOCHS: int = 1,
    QAT_LEARNING_RATE: float = 0.0001,
    BATCH_SIZE: int = 1,
    TRANSFORMER: bool = True,
    SUBSET_SIZE: int = 300,
    VALIDATE: bool = True,
    VALIDATION_INTERVAL: int = 1,
    CRITERION: str = "CrossEntropyLoss",
    OPTIMIZER: str = "Adam",
    SEED: int = 43,
):
    """OpenVINO INT8 via NNCF quantization-aware training; the output loads with openvino.Core().read_model."""
    from visioncompress.config import TrainConfig, config_from
    from visioncompress.config.qat import OpenVinoQATConfig
    from visioncompress.kfp_io import describe_model, log_training, stage
    from visioncompress.quantize import quantize_aware

    with stage("qat_openvino"):
        config = config_from(OpenVinoQATConfig, locals())
        train_config = config_from(TrainConfig, locals())
        result = quantize_aware(model.path, dataset.path, quantized_model.path, config, train_config,
                                checkpoint_dir=quantized_model.path + ".checkpoints")
        describe_model(quantized_model, result)
        log_training(metrics, result.metrics)
