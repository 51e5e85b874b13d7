"""GPU Post Training Quantization - TensorRT: the QDQ calibration step and the engine build.

The input size is not a parameter here: it comes from the dataset (``insize`` at data preparation),
recorded in the model's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import check_bool, check_choice, check_int, param
from visioncompress.errors import ConfigError

TENSORRT_CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile")


@dataclass
class TensorRTConfig:
    batch_size: int = param('BATCH_SIZE')
    fp16_fallback: bool = param('FP16_FALLBACK')
    dynamic_batch: bool = param('DYNAMIC_BATCH')
    max_batch_size: int = param('MAX_BATCH_SIZE')
    workspace_mb: int = param('WORKSPACE_MB')
    calibration_batch_size: int = param('CALIBRATION_BATCH_SIZE')
    calibration_method: str = param('CALIBRATION_METHOD')
    optional: bool = param('TENSORRT_OPTIONAL')

    def __post_init__(self) -> None:
        self.batch_size = check_int("BATCH_SIZE", self.batch_size, minimum=1)
        self.fp16_fallback = check_bool("FP16_FALLBACK", self.fp16_fallback)
        self.optional = check_bool("TENSORRT_OPTIONAL", self.optional)
        self.dynamic_batch = check_bool("DYNAMIC_BATCH", self.dynamic_batch)
        self.max_batch_size = check_int("MAX_BATCH_SIZE", self.max_batch_size, minimum=1)
        self.workspace_mb = check_int("WORKSPACE_MB", self.workspace_mb, minimum=16)
        self.calibration_batch_size = check_int("CALIBRATION_BATCH_SIZE", self.calibration_batch_size, minimum=1)
        self.calibration_method = check_choice("CALIBRATION_METHOD", self.calibration_method,
                                               TENSORRT_CALIBRATION_METHODS)
        if self.dynamic_batch and self.max_batch_size < self.batch_size:
            raise ConfigError("MAX_BATCH_SIZE", self.max_batch_size,
                              f"an integer >= BATCH_SIZE ({self.batch_size}) when DYNAMIC_BATCH is true")

    def batch_profile(self) -> tuple[int, int, int]:
        """(min, opt, max) batch of the engine's optimization profile."""
        if self.dynamic_batch:
            return 1, self.batch_size, self.max_batch_size
        return self.batch_size, self.batch_size, self.batch_size
