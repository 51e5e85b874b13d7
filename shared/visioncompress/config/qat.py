"""Quantization-aware training parameters, one config per backend.

The spec's common table (TRAINING, FINETUNE_EPOCHS, LEARNING_RATE, ...) describes the optional
FP32 fine-tune that runs before QAT and lives in ``TrainConfig``; QAT reuses that config's
optimizer, criterion, validation and seed, and takes its own epochs and learning rate from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import check_bool, check_choice, check_float, check_int, spec_field

TORCH_QAT_ENGINES = ("x86", "fbgemm", "onednn", "qnnpack")


def _check_common(config) -> None:
    config.qat_epochs = check_int("QAT_EPOCHS", config.qat_epochs, minimum=1)
    config.qat_learning_rate = check_float("QAT_LEARNING_RATE", config.qat_learning_rate, low=0.0, low_open=True)
    config.batch_size = check_int("BATCH_SIZE", config.batch_size, minimum=1)


@dataclass
class TorchQATConfig:
    qat_epochs: int = spec_field(1, "QAT_EPOCHS", help="epochs of training with fake quantization")
    qat_learning_rate: float = spec_field(1e-4, "QAT_LEARNING_RATE", help="learning rate during QAT")
    batch_size: int = spec_field(1, "BATCH_SIZE", help="QAT training batch size")
    engine: str = spec_field("x86", "QUANTIZED_ENGINE", help="torch quantized engine: x86, fbgemm, onednn, qnnpack")

    def __post_init__(self) -> None:
        _check_common(self)
        self.engine = check_choice("QUANTIZED_ENGINE", self.engine, TORCH_QAT_ENGINES)


@dataclass
class OpenVinoQATConfig:
    qat_epochs: int = spec_field(1, "QAT_EPOCHS", help="epochs of training with NNCF fake quantization")
    qat_learning_rate: float = spec_field(1e-4, "QAT_LEARNING_RATE", help="learning rate during QAT")
    batch_size: int = spec_field(1, "BATCH_SIZE", help="QAT training batch size")
    transformer: bool = spec_field(True, "TRANSFORMER", help="use NNCF's transformer model type")
    subset_size: int = spec_field(300, "SUBSET_SIZE", help="calibration images for the initial quantizer ranges")

    def __post_init__(self) -> None:
        _check_common(self)
        self.transformer = check_bool("TRANSFORMER", self.transformer)
        self.subset_size = check_int("SUBSET_SIZE", self.subset_size, minimum=1)
