from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def quantize_onnx(
    model: Input[Model],
    dataset: Input[Dataset],
    quantized_model: Output[Model],
    quant_format: str = "QuantFormat.QDQ",
    per_channel: bool = False,
    activation_type: str = "QuantType.QInt8",
    weight_type: str = "QuantType.QInt8",
    BATCH_SIZE: int = 1,
):
    """ONNX Runtime static INT8 quantization; the output loads with onnx.load."""
    from visioncompress.config import OnnxPTQConfig
    from visioncompress.kfp_io import describe_model, stage
    from visioncompress.quantize import quantize

    with stage("quantize_onnx"):
        config = OnnxPTQConfig(quant_format=quant_format, per_channel=per_channel, activation_type=activation_type,
                               weight_type=weight_type, batch_size=BATCH_SIZE)
        describe_model(quantized_model, quantize(model.path, dataset.path, quantized_model.path, config))
