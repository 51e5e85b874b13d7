from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def quantize_torch(
    model: Input[Model],
    dataset: Input[Dataset],
    quantized_model: Output[Model],
    choice: str = "static",
    BATCH_SIZE: int = 1,
):
    """PyTorch CPU post-training quantization; the output loads with torch.jit.load."""
    from visioncompress.config import TorchPTQConfig
    from visioncompress.kfp_io import describe_model, stage
    from visioncompress.quantize import quantize

    with stage("quantize_torch"):
        config = TorchPTQConfig(choice=choice, batch_size=BATCH_SIZE)
        describe_model(quantized_model, quantize(model.path, dataset.path, quantized_model.path, config))
