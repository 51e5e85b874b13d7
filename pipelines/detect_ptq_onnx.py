"""Object detection: CPU Post Training Quantization - ONNX (the detector's core in INT8, post-processing
outside the graph)."""

from kfp import dsl
from kfp.dsl import Markdown

from pipelines.ptq_onnx import onnx_ptq_steps


@dsl.pipeline(name="visioncompress-detect-ptq-onnx",
              description="Detection: prepare COCO data, fine-tune a detector, ONNX Runtime static INT8 PTQ, "
                          "mAP and latency against FP32.")
def detect_ptq_onnx(
    insize: int = 128,
    BATCH_SIZE: int = 8,
    TRAINING: bool = True,
    VALIDATE: bool = True,
    VALIDATION_INTERVAL: int = 1,
    LEARNING_RATE: float = 0.001,
    FINETUNE_EPOCHS: int = 1,
    OPTIMIZER: str = "Adam",
    PRETRAINED: bool = False,
    quant_format: str = "QuantFormat.QDQ",
    per_channel: bool = False,
    activation_type: str = "QuantType.QInt8",
    weight_type: str = "QuantType.QInt8",
    MODEL: str = "fcos_resnet18_fpn",
    CUSTOM_MODEL_PATH: str = "",
    DATASET_SOURCE: str = "fashion-mnist-detection",
    DATASET_PATH: str = "",
    MAX_TRAIN_SAMPLES: int = 0,
    MAX_TEST_SAMPLES: int = 0,
    CALIBRATION_SAMPLES: int = 128,
    DESTINATION: str = "",
    ACCURACY_BUDGET: float = 1.0,
    RUN_DATE: str = "",
    PUBLISH_OVER_BUDGET: bool = False,
    KEEP_LAST: int = 0,
) -> Markdown:
    return onnx_ptq_steps(locals(), title="Detection PTQ - ONNX Runtime", step_name="PTQ ONNX Runtime (detector core)")
