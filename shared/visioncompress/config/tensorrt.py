"""GPU Post Training Quantization - TensorRT: the QDQ calibration step and the engine build.

The input size is not a parameter here: it comes from the dataset (``insize`` at data preparation),
recorded in the model's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import check_bool, check_choice, check_int, spec_field
from visioncompress.errors import ConfigError

TENSORRT_CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile")


@dataclass
class TensorRTConfig:
    batch_size: int = spec_field(1, "BATCH_SIZE", help="engine batch size (the optimal batch of the profile when "
                                 "DYNAMIC_BATCH is true)")
    fp16_fallback: bool = spec_field(True, "FP16_FALLBACK", help="let layers without Q/DQ run in FP16 instead of "
                                     "FP32 (TensorRT 10; TensorRT 11 keeps the ONNX types)")
    dynamic_batch: bool = spec_field(False, "DYNAMIC_BATCH", help="build a batch profile min 1 / opt BATCH_SIZE / "
                                     "max MAX_BATCH_SIZE instead of a fixed BATCH_SIZE")
    max_batch_size: int = spec_field(32, "MAX_BATCH_SIZE", help="largest batch of the dynamic profile")
    workspace_mb: int = spec_field(1024, "WORKSPACE_MB", help="TensorRT builder workspace memory pool, MiB")
    calibration_batch_size: int = spec_field(32, "CALIBRATION_BATCH_SIZE", help="images per calibration batch")
    calibration_method: str = spec_field("MinMax", "CALIBRATION_METHOD",
                                         help="activation range calibration: MinMax, Entropy, Percentile")

    def __post_init__(self) -> None:
        self.batch_size = check_int("BATCH_SIZE", self.batch_size, minimum=1)
        self.fp16_fallback = check_bool("FP16_FALLBACK", self.fp16_fallback)
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
