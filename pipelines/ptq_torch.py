"""CPU Post Training Quantization - Torch (the spec's parameters and defaults)."""

from kfp import dsl
from kfp.dsl import Markdown

from components.quantize_torch.component import quantize_torch
from pipelines._steps import measure, prepare_data_and_model, summarize
from pipelines.placement import on_cpu


@dsl.pipeline(name="visioncompress-ptq-torch",
              description="Prepare data, fine-tune, PyTorch CPU INT8 PTQ, benchmark against FP32.")
def ptq_torch(
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
    choice: str = "static",
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
    quantized = on_cpu(quantize_torch(model=model.outputs["model"], dataset=data.outputs["dataset"], choice=choice,
                                      BATCH_SIZE=BATCH_SIZE)).set_display_name("PTQ torch")
    results = dict(
        fp32=measure(model.outputs["model"], data, BATCH_SIZE=BATCH_SIZE, name="FP32", fp32_runtimes=["torch"]),
        torch_ptq=measure(quantized.outputs["quantized_model"], data, BATCH_SIZE=BATCH_SIZE, name="torch INT8"),
    )
    return summarize(locals(), results, {"torch_ptq": quantized.outputs["quantized_model"]}, title="PTQ - Torch")
