"""Bad parameters fail before any work, naming the parameter and what is allowed."""

import pytest

from visioncompress.config import (
    DataConfig, OnnxPTQConfig, TorchPTQConfig, TrainConfig, from_spec, to_spec,
)
from visioncompress.errors import ConfigError
from visioncompress.pipelines.registry import PIPELINES, validate_pipeline_params


@pytest.mark.parametrize("make, parameter, allowed_hint", [
    (lambda: TrainConfig(optimizer="Adamz"), "OPTIMIZER", "SGD"),
    (lambda: TrainConfig(criterion="HingeLossy"), "CRITERION", "CrossEntropyLoss"),
    (lambda: TorchPTQConfig(choice="dynamic"), "choice", "static, weight, fusion"),
    (lambda: DataConfig(insize=4), "insize", ">= 8"),
    (lambda: OnnxPTQConfig(quant_format="QuantFormat.QOperator", activation_type="QuantType.QInt16"),
     "quant_format", "QuantFormat.QDQ"),
    (lambda: OnnxPTQConfig(activation_type="QuantType.QFLOAT8E4M3FN"), "calibrate_method", "Distribution"),
    (lambda: OnnxPTQConfig(weight_type="int4"), "weight_type", "QInt8"),
    (lambda: TrainConfig(batch_size=0), "BATCH_SIZE", ">= 1"),
])
def test_bad_parameter_names_parameter_and_allowed_values(make, parameter, allowed_hint):
    with pytest.raises(ConfigError) as info:
        make()
    assert info.value.parameter == parameter
    assert parameter in str(info.value) and allowed_hint in str(info.value)


def test_spec_spellings_are_accepted():
    config = from_spec(TrainConfig, {"LEARNING RATE": 0.01, "CRITERION": "MSE Loss", "OPTIMIZER": "sgd"})
    assert (config.learning_rate, config.criterion, config.optimizer) == (0.01, "MSELoss", "SGD")
    onnx = OnnxPTQConfig(quant_format="QDQ", activation_type="QuantType.QUInt8")
    assert (onnx.quant_format, onnx.activation_type) == ("QDQ", "QUInt8")
    assert to_spec(TorchPTQConfig())["choice"] == "static"


def test_spec_defaults():
    train = TrainConfig()
    assert (train.training, train.validate, train.validation_interval, train.criterion, train.learning_rate,
            train.finetune_epochs, train.optimizer, train.batch_size) == (
        True, True, 1, "CrossEntropyLoss", 0.001, 1, "Adam", 1)
    onnx = OnnxPTQConfig()
    assert (onnx.quant_format, onnx.per_channel, onnx.activation_type, onnx.weight_type) == (
        "QDQ", False, "QInt8", "QInt8")
    assert DataConfig().insize == 32


def test_unknown_key_gets_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'BATCH_SIZE'"):
        from_spec(TrainConfig, {"BATCHSIZE": 4})


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_pipeline_defaults_validate(name):
    params = validate_pipeline_params(name, {})
    if name.startswith("detect_"):  # detection pipelines: detector-sized defaults (README, Object detection)
        assert params["insize"] == 128 and params["BATCH_SIZE"] == 8
    else:
        assert params["insize"] == 32 and params["BATCH_SIZE"] == 1


@pytest.mark.parametrize("params, parameter", [
    ({"OPTIMIZER": "Adamz"}, "OPTIMIZER"),
    ({"choice": "int4"}, "choice"),
    ({"insize": 7}, "insize"),
    ({"quant_format": "QuantFormat.QOperator", "weight_type": "QuantType.QUInt16"}, "quant_format"),
    ({"LEARNIN_RATE": 0.1}, "LEARNIN_RATE"),
])
def test_pipeline_parameters_rejected_before_run(params, parameter):
    with pytest.raises(ConfigError) as info:
        validate_pipeline_params("compare", params)
    assert info.value.parameter == parameter
