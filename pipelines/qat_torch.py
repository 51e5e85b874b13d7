"""CPU Quantization Aware Training - Torch (FX QAT, x86 engine), the spec's parameters and defaults."""

from kfp import dsl
from kfp.dsl import Markdown

from components.qat_torch.component import qat_torch as qat_torch_op
from pipelines._steps import measure, pick, prepare_data_and_model, summarize
from pipelines.placement import on_cpu

QAT_PARAMS = ("QAT_EPOCHS", "QAT_LEARNING_RATE", "BATCH_SIZE", "VALIDATE", "VALIDATION_INTERVAL", "CRITERION",
              "OPTIMIZER", "SEED")


@dsl.pipeline(name="visioncompress-qat-torch",
              description="Prepare data, fine-tune, PyTorch INT8 quantization-aware training, benchmark against FP32.")
def qat_torch(
    insize: int = 32,
    BATCH_SIZE: int = 1,
    TRAINING: bool = True,
    VALIDATE: bool = True,
    VALIDATION_INTERVAL: int = 1,
    CRITERION: str = "CrossEntropyLoss",
    LEARNING_RATE: float = 0.001,
    FINETUNE_EPOCHS: int = 1,
    OPTIMIZER: str = "Adam",
    PRETRAINED: bool = False,
    QAT_EPOCHS: int = 1,
    QAT_LEARNING_RATE: float = 0.0001,
    SEED: int = 43,
    MODEL: str = "resnet18",
    CUSTOM_MODEL_PATH: str = "",
    DATASET_SOURCE: str = "fashion-mnist",
    DATASET_NAME: str = "",
    DATASET_PATH: str = "",
    MAX_TRAIN_SAMPLES: int = 0,
    MAX_TEST_SAMPLES: int = 0,
    CALIBRATION_SAMPLES: int = 512,
    DESTINATION: str = "",
    ACCURACY_BUDGET: float = 1.0,
    RUN_DATE: str = "",
    PUBLISH_OVER_BUDGET: bool = False,
    KEEP_LAST: int = 0,
) -> Markdown:
    data, model = prepare_data_and_model(locals())
    qat = on_cpu(qat_torch_op(model=model.outputs["model"], dataset=data.outputs["dataset"],
                              **pick(locals(), QAT_PARAMS))).set_display_name("QAT Torch (FX, x86)")
    results = dict(
        fp32=measure(model.outputs["model"], data, BATCH_SIZE=BATCH_SIZE, name="FP32", fp32_runtimes=["torch"]),
        torch_qat=measure(qat.outputs["quantized_model"], data, BATCH_SIZE=BATCH_SIZE, name="Torch QAT INT8",
                          variant="qat-int8"),
    )
    return summarize(locals(), results, {"torch_qat": qat.outputs["quantized_model"]},
                     title="QAT - PyTorch (FX)")
