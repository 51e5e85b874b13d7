"""ONNX Runtime's INT8 form chosen for the node: from the CPU's features, and with TUNE by timing on this CPU."""

import onnx
import pytest

from visioncompress.artifacts import read_model_metadata
from visioncompress.config import OnnxPTQConfig
from visioncompress.cpu import CpuFeatures, cpu_features
from visioncompress.errors import ConfigError
from visioncompress.quantize import quantize
from visioncompress.quantize.onnx import choose_form

AVX2 = CpuFeatures("x86_64", frozenset({"avx", "avx2", "fma"}))
VNNI = CpuFeatures("x86_64", frozenset({"avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}))
AMX = VNNI.__class__("x86_64", VNNI.flags | {"amx_int8", "amx_bf16", "amx_tile"})
ARM = CpuFeatures("aarch64", frozenset({"asimd", "asimddp", "i8mm"}))


@pytest.mark.parametrize("features, expected, why", [
    (AVX2, ("QUInt8", "QDQ"), "vpmaddubsw"),
    (VNNI, ("QUInt8", "QDQ"), "VNNI"),
    (AMX, ("QUInt8", "QDQ"), "AMX-INT8"),
    (ARM, ("QInt8", "QDQ"), "signed activations"),
])
def test_form_from_features(features, expected, why):
    form = choose_form(features)
    assert (form.activation_type, form.quant_format) == expected and why in form.reason


def test_explicit_values_are_kept():
    form = choose_form(VNNI, activation_type="QInt8", quant_format="QOperator")
    assert (form.activation_type, form.quant_format) == ("QInt8", "QOperator")
    assert "as set" in form.reason
    assert choose_form(AVX2, quant_format="QOperator").quant_format == "QOperator"


def test_cpu_features_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 avx512f avx512bw avx512_vnni\n")
    features = cpu_features(info, machine="x86_64")
    assert features.vnni and features.avx512 and not features.amx_int8 and features.model == "Test CPU"
    assert not cpu_features(tmp_path / "missing", machine="x86_64").flags


def test_auto_needs_8bit_weights():
    with pytest.raises(ConfigError, match="weight_type"):
        OnnxPTQConfig(activation_type="auto", weight_type="QuantType.QInt16")
    assert OnnxPTQConfig().activation_type == "QInt8"  # the spec's default stays


def test_auto_on_this_cpu(fp32_model_dir, dataset_dir, tmp_path):
    """Without TUNE: the form the features give, written into the model and its metadata."""
    out = tmp_path / "auto"
    metadata = quantize(fp32_model_dir, dataset_dir, out, OnnxPTQConfig(activation_type="auto",
                                                                        quant_format="QuantFormat.QDQ"))
    expected = choose_form(cpu_features(), quant_format="QDQ")
    form = read_model_metadata(out).params["INT8_FORM"]
    assert form["activation_type"] == expected.activation_type == metadata.params["activation_type"]
    assert form["requested"]["activation_type"] == "auto" and form["reason"] == expected.reason
    graph = onnx.load(str(out / "model.onnx")).graph
    zero_points = {i.data_type for i in graph.initializer if i.name.endswith("zero_point")}
    uint8, int8 = onnx.TensorProto.UINT8, onnx.TensorProto.INT8
    assert (uint8 in zero_points) == (expected.activation_type == "QUInt8") and int8 in zero_points


def test_tune_times_the_candidates_on_this_cpu(fp32_model_dir, dataset_dir, tmp_path):
    out = tmp_path / "tuned"
    quantize(fp32_model_dir, dataset_dir, out, OnnxPTQConfig(activation_type="auto", quant_format="auto",
                                                             tune=True, batch_size=8))
    form = read_model_metadata(out).params["INT8_FORM"]
    timings = form["timings_ms"]
    assert set(timings) == {"U8S8 QDQ", "U8S8 QOperator", "S8S8 QDQ", "S8S8 QOperator"}
    assert "fastest of the candidates timed on this node" in form["reason"]
    if cpu_features().x86:
        # measured on AVX2 and AVX-512 VNNI/AMX machines: S8S8 Q/DQ is several times slower than U8S8
        assert form["activation_type"] == "QUInt8"
        assert timings["S8S8 QDQ"]["8"] > 1.5 * timings["U8S8 QDQ"]["8"]
