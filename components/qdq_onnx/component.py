from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def qdq_onnx(
    model: Input[Model],
    dataset: Input[Dataset],
    qdq_model: Output[Model],
    CALIBRATION_BATCH_SIZE: int = 32,
    CALIBRATION_METHOD: str = "MinMax",
):
    """CPU half of TensorRT PTQ: a calibrated QDQ ONNX model (symmetric INT8, per-channel weights)."""
    from visioncompress.config.tensorrt import TensorRTConfig
    from visioncompress.kfp_io import describe_model, stage
    from visioncompress.quantize.tensorrt import make_qdq_onnx

    with stage("qdq_onnx"):
        config = TensorRTConfig(calibration_batch_size=CALIBRATION_BATCH_SIZE, calibration_method=CALIBRATION_METHOD)
        describe_model(qdq_model, make_qdq_onnx(model.path, dataset.path, qdq_model.path, config))
