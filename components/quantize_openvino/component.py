from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def quantize_openvino(
    model: Input[Model],
    dataset: Input[Dataset],
    quantized_model: Output[Model],
    TRANSFORMER: bool = True,
    SUBSET_SIZE: int = 300,
):
    """OpenVINO INT8 via NNCF post-training quantization; the output loads with openvino.Core().read_model."""
    from visioncompress.config import OpenVinoPTQConfig
    from visioncompress.kfp_io import describe_model, stage
    from visioncompress.quantize import quantize

    with stage("quantize_openvino"):
        config = OpenVinoPTQConfig(transformer=TRANSFORMER, subset_size=SUBSET_SIZE)
        describe_model(quantized_model, quantize(model.path, dataset.path, quantized_model.path, config))
