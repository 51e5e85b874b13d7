"""Post-training quantization parameters, one config per backend."""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import check_bool, check_choice, check_float, check_int, param
from visioncompress.config.qat import TORCH_QAT_ENGINES
from visioncompress.errors import ConfigError

TORCH_PTQ_CHOICES = ("static", "weight", "fusion")
ONNX_QUANT_FORMATS = ("QDQ", "QOperator")
ONNX_QUANT_TYPES = ("QInt8", "QUInt8", "QFLOAT8E4M3FN", "QInt16", "QUInt16")
AUTO = "auto"  # activation_type / quant_format: the 8-bit form chosen for this node's CPU (quantize.onnx)
ONNX_CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile", "Distribution")


def _strip_prefix(value: str, prefix: str) -> str:
    text = str(value).strip()
    return text[len(prefix):] if text.startswith(prefix) else text


@dataclass
class TorchPTQConfig:
    choice: str = param('choice')
    batch_size: int = param('BATCH_SIZE')
    engine: str = param('QUANTIZED_ENGINE')

    def __post_init__(self) -> None:
        self.choice = check_choice("choice", self.choice, TORCH_PTQ_CHOICES)
        self.batch_size = check_int("BATCH_SIZE", self.batch_size, minimum=1)
        self.engine = check_choice("QUANTIZED_ENGINE", self.engine, TORCH_QAT_ENGINES)


@dataclass
class OnnxPTQConfig:
    quant_format: str = param('quant_format')
    per_channel: bool = param('per_channel')
    activation_type: str = param('activation_type')
    weight_type: str = param('weight_type')
    calibrate_method: str = param('calibrate_method')
    batch_size: int = param('BATCH_SIZE')
    tune: bool = param('TUNE')

    def __post_init__(self) -> None:
        self.quant_format = check_choice("quant_format", _strip_prefix(self.quant_format, "QuantFormat."),
                                         ONNX_QUANT_FORMATS + (AUTO,))
        self.per_channel = check_bool("per_channel", self.per_channel)
        self.activation_type = check_choice("activation_type", _strip_prefix(self.activation_type, "QuantType."),
                                            ONNX_QUANT_TYPES + (AUTO,))
        self.weight_type = check_choice("weight_type", _strip_prefix(self.weight_type, "QuantType."),
                                        ONNX_QUANT_TYPES)
        self.calibrate_method = check_choice("calibrate_method", self.calibrate_method, ONNX_CALIBRATION_METHODS)
        self.batch_size = check_int("BATCH_SIZE", self.batch_size, minimum=1)
        self.tune = check_bool("TUNE", self.tune)
        types = {self.activation_type, self.weight_type}
        if AUTO in (self.activation_type, self.quant_format) and self.weight_type not in {"QInt8", "QUInt8"}:
            raise ConfigError("weight_type", self.weight_type, "QuantType.QInt8 or QuantType.QUInt8 when "
                              "activation_type or quant_format is auto (auto chooses among 8-bit forms)")
        # onnxruntime refuses these combinations deep inside quantize_static; refuse them here instead.
        if self.quant_format == "QOperator" and types & {"QInt16", "QUInt16"}:
            raise ConfigError("quant_format", "QuantFormat.QOperator",
                              "QuantFormat.QDQ when activation_type or weight_type is 16-bit "
                              f"(got activation_type={self.activation_type}, weight_type={self.weight_type})")
        if "QFLOAT8E4M3FN" in types:
            if self.calibrate_method != "Distribution":
                raise ConfigError("calibrate_method", self.calibrate_method,
                                  "'Distribution' when activation_type or weight_type is QFLOAT8E4M3FN")
            if self.quant_format != "QDQ":
                raise ConfigError("quant_format", "QuantFormat." + self.quant_format,
                                  "QuantFormat.QDQ when a float8 type is requested")


@dataclass
class OpenVinoPTQConfig:
    transformer: bool = param('TRANSFORMER')
    subset_size: int = param('SUBSET_SIZE')
    preset: str = param('PRESET')
    fast_bias_correction: bool = param('FAST_BIAS_CORRECTION')
    max_accuracy_drop: float = param('MAX_ACCURACY_DROP')

    def __post_init__(self) -> None:
        self.max_accuracy_drop = check_float("MAX_ACCURACY_DROP", self.max_accuracy_drop, low=0.0)
        self.transformer = check_bool("TRANSFORMER", self.transformer)
        self.subset_size = check_int("SUBSET_SIZE", self.subset_size, minimum=1)
        self.preset = check_choice("PRESET", self.preset, ("performance", "mixed"))
        self.fast_bias_correction = check_bool("FAST_BIAS_CORRECTION", self.fast_bias_correction)


LADDER_BACKENDS = ("openvino", "onnx", "torch")


@dataclass
class LadderConfig:
    """The accuracy-aware ladder: which runtime, and how many points of validation top-1 INT8 may lose.

    ``accuracy_budget`` is the publish gate's ACCURACY_BUDGET (one declaration). The pipeline keeps it >= 0
    (PublishConfig); the library takes any number, so a negative budget (INT8 must beat FP32) is the
    impossible budget its tests use."""
    backend: str = param('LADDER_BACKEND')
    accuracy_budget: float = param('ACCURACY_BUDGET')

    def __post_init__(self) -> None:
        self.backend = check_choice("LADDER_BACKEND", self.backend, LADDER_BACKENDS)
        self.accuracy_budget = check_float("ACCURACY_BUDGET", self.accuracy_budget)
