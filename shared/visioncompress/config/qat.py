"""Quantization-aware training parameters, one config per backend.

The spec's common table (TRAINING, FINETUNE_EPOCHS, LEARNING_RATE, ...) describes the optional
FP32 fine-tune that runs before QAT and lives in ``TrainConfig``; QAT reuses that config's
optimizer, criterion, validation and seed, and takes its own epochs and learning rate from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import check_bool, check_choice, check_float, check_int, param

TORCH_QAT_ENGINES = ("auto", "x86", "fbgemm", "onednn", "qnnpack")


def _check_common(config) -> None:
    config.qat_epochs = check_int("QAT_EPOCHS", config.qat_epochs, minimum=1)
    config.qat_learning_rate = check_float("QAT_LEARNING_RATE", config.qat_learning_rate, low=0.0, low_open=True)
    config.batch_size = check_int("BATCH_SIZE", config.batch_size, minimum=1)


@dataclass
class TorchQATConfig:
    qat_epochs: int = param('QAT_EPOCHS')
    qat_learning_rate: float = param('QAT_LEARNING_RATE')
    batch_size: int = param('BATCH_SIZE')
    engine: str = param('QUANTIZED_ENGINE')

    def __post_init__(self) -> None:
        _check_common(self)
        self.engine = check_choice("QUANTIZED_ENGINE", self.engine, TORCH_QAT_ENGINES)


@dataclass
class OpenVinoQATConfig:
    qat_epochs: int = param('QAT_EPOCHS')
    qat_learning_rate: float = param('QAT_LEARNING_RATE')
    batch_size: int = param('BATCH_SIZE')
    transformer: bool = param('TRANSFORMER')
    subset_size: int = param('SUBSET_SIZE')

    def __post_init__(self) -> None:
        _check_common(self)
        self.transformer = check_bool("TRANSFORMER", self.transformer)
        self.subset_size = check_int("SUBSET_SIZE", self.subset_size, minimum=1)


@dataclass
class TensorRTQATConfig:
    """TensorRTQAT: QAT in TensorRT's INT8 form (symmetric), exported as a QDQ ONNX model for the engine build."""
    qat_epochs: int = param('QAT_EPOCHS')
    qat_learning_rate: float = param('QAT_LEARNING_RATE')
    batch_size: int = param('BATCH_SIZE')

    def __post_init__(self) -> None:
        _check_common(self)
