"""TensorRT PTQ: the CPU half (calibrated QDQ ONNX) fully; the GPU half wherever TensorRT and CUDA exist.

Without TensorRT or a GPU (this CI machine) the GPU tests skip with the reason, and other tests check
that the GPU stages then fail with one clear line, or skip with a notice when TENSORRT_OPTIONAL is set.
"""

import inspect
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from google.protobuf import json_format
from kfp import compiler
from kfp.dsl import Artifact, Dataset, Metrics, Model
from kfp.pipeline_spec import pipeline_spec_pb2
from onnx import numpy_helper

from visioncompress.artifacts import read_model_metadata
from visioncompress.benchmark.measure import top1
from visioncompress.benchmark.runners import load_runner
from visioncompress.config import from_spec
from visioncompress.config.tensorrt import TensorRTConfig
from visioncompress.data import load_dataset
from visioncompress.errors import ConfigError, MissingDependencyError
from visioncompress.quantize.tensorrt import (
    CalibrationReader, build_engine, make_qdq_onnx, read_skip_notice, tensorrt_unavailable_reason,
)
from visioncompress.settings import load_settings

MAX_TOP1_DROP = 1.0  # points on 1000 held-out Fashion-MNIST test images
TRT_MISSING = tensorrt_unavailable_reason()
needs_tensorrt = pytest.mark.skipif(TRT_MISSING is not None, reason=f"TensorRT GPU half not testable here: "
                                                                     f"{TRT_MISSING}")
without_tensorrt = pytest.mark.skipif(TRT_MISSING is None, reason="TensorRT and CUDA are present on this machine")


@pytest.fixture(scope="module")
def fp32_top1(fp32_model_dir, dataset_dir):
    _, runner = load_runner(fp32_model_dir)
    accuracy, n = top1(runner, load_dataset(dataset_dir))
    assert n == 1000 and accuracy > 70.0
    return accuracy


@pytest.fixture(scope="module")
def qdq(fp32_model_dir, dataset_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("trt") / "qdq"
    metadata = make_qdq_onnx(fp32_model_dir, dataset_dir, out, TensorRTConfig())
    return out, metadata


# --- configuration ------------------------------------------------------------------------------

def test_config_defaults_profiles_and_checks():
    config = TensorRTConfig()
    assert (config.batch_size, config.fp16_fallback, config.dynamic_batch) == (1, True, False)
    assert config.batch_profile() == (1, 1, 1)
    dynamic = from_spec(TensorRTConfig, {"BATCH_SIZE": 8, "DYNAMIC_BATCH": True, "MAX_BATCH_SIZE": 64})
    assert dynamic.batch_profile() == (1, 8, 64)
    assert TensorRTConfig(batch_size=4).batch_profile() == (4, 4, 4)
    with pytest.raises(ConfigError, match="MAX_BATCH_SIZE=2 is not allowed; expected an integer >= BATCH_SIZE"):
        TensorRTConfig(batch_size=8, dynamic_batch=True, max_batch_size=2)
    with pytest.raises(ConfigError, match="CALIBRATION_METHOD"):
        TensorRTConfig(calibration_method="Histogram")


# --- CPU half: the calibrated QDQ ONNX model ----------------------------------------------------------

def _initializers(model):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_qdq_model_is_symmetric_int8_with_per_channel_weights(qdq):
    out, metadata = qdq
    assert (metadata.stage, metadata.format, metadata.precision) == ("qdq_onnx", "onnx", "int8")
    assert read_model_metadata(out).file_name == "model.onnx"
    model = onnx.load(str(out / "model.onnx"))  # the standard call
    onnx.checker.check_model(model)
    assert [o.domain for o in model.opset_import] == [""]  # standard ONNX ops only
    nodes = model.graph.node
    ops = {n.op_type for n in nodes}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    inits = _initializers(model)

    q_and_dq = [n for n in nodes if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    zero_points = [inits[n.input[2]] for n in q_and_dq if len(n.input) > 2 and n.input[2] in inits]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points), "activations symmetric"

    dq_by_output = {n.output[0]: n for n in nodes if n.op_type == "DequantizeLinear"}
    convs = [n for n in nodes if n.op_type == "Conv"]
    for conv in convs:
        weight_dq = dq_by_output[conv.input[1]]  # every Conv weight comes through a DequantizeLinear
        weight, scale = inits[weight_dq.input[0]], inits[weight_dq.input[1]]
        axis = {a.name: a.i for a in weight_dq.attribute}.get("axis")
        assert weight.dtype == np.int8 and axis == 0 and scale.shape == (weight.shape[0],), conv.name
        if len(conv.input) > 2:  # biases stay float, the form TensorRT folds into its INT8 kernels
            assert conv.input[2] in inits and inits[conv.input[2]].dtype == np.float32
    assert not any(inits[n.input[0]].dtype == np.int32 for n in dq_by_output.values() if n.input[0] in inits)


def test_qdq_model_runs_in_onnxruntime_cpu_within_a_point_of_fp32(qdq, dataset_dir, fp32_top1):
    import onnxruntime as ort

    out, _ = qdq
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_providers() == ["CPUExecutionProvider"]
    dataset = load_dataset(dataset_dir)
    logits = session.run(None, {session.get_inputs()[0].name: dataset.example_input(3)})[0]
    assert logits.shape == (3, 10)  # the batch axis stays dynamic
    accuracy, n = top1(load_runner(out)[1], dataset)
    assert n == 1000
    assert accuracy >= fp32_top1 - MAX_TOP1_DROP, (accuracy, fp32_top1)
    print(f"\nFP32 top-1 {fp32_top1:.2f}%  QDQ ONNX (onnxruntime CPU) top-1 {accuracy:.2f}%")


def test_calibration_reads_the_calibration_split_of_training_data_only(dataset_dir, qdq):
    dataset = load_dataset(dataset_dir)
    reader = CalibrationReader(dataset, batch_size=32)
    fed = []
    while (item := reader.get_next()) is not None:
        assert list(item) == ["input"]
        fed.append(item["input"])
    calibration_images, _ = dataset.arrays("calibration")
    np.testing.assert_array_equal(np.concatenate(fed), dataset.normalise(calibration_images))
    assert reader.images_read == len(calibration_images) == dataset.manifest.splits["calibration"] == 256
    reader.rewind()
    assert reader.get_next()["input"].shape == (32, 3, 32, 32)
    # The calibration split is a subset of the training images (data preparation draws it from there).
    train_images, _ = dataset.arrays("train")
    train_rows = {row.tobytes() for row in train_images}
    assert all(image.tobytes() in train_rows for image in calibration_images)
    # And the QDQ step consumed exactly that split.
    _, metadata = qdq
    assert metadata.metrics["calibration_images"] == 256


# --- GPU half, where it cannot run: clear failures and visible skips ------------------------------------

@without_tensorrt
def test_engine_build_without_tensorrt_is_one_clear_error(qdq, tmp_path):
    out, _ = qdq
    with pytest.raises(MissingDependencyError) as info:
        build_engine(out, tmp_path / "engine", TensorRTConfig())
    message = str(info.value)
    assert "\n" not in message and message.startswith("TensorRT cannot run on this node: ")
    assert "GPU" in message and not (tmp_path / "engine").exists()
    from visioncompress.benchmark.tensorrt_runner import TensorRTRunner

    with pytest.raises(MissingDependencyError):
        TensorRTRunner(tmp_path / "model.engine")


@without_tensorrt
def test_build_component_ends_with_one_line_without_tensorrt(qdq, tmp_path, capsys):
    from visioncompress.components.build_tensorrt_engine.component import build_tensorrt_engine

    out, _ = qdq
    with pytest.raises(SystemExit) as exit_info:
        build_tensorrt_engine.python_func(qdq_model=Model(uri=str(out)), engine=Model(uri=str(tmp_path / "e")))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("visioncompress: build_tensorrt_engine: TensorRT cannot run on this node: ")


@without_tensorrt
def test_optional_tensorrt_skips_build_and_benchmark_with_a_notice(qdq, dataset_dir, tmp_path, capsys):
    from visioncompress.components.benchmark_gpu.component import benchmark_gpu
    from visioncompress.components.build_tensorrt_engine.component import build_tensorrt_engine

    out, _ = qdq
    engine = Model(uri=str(tmp_path / "engine"))
    build_tensorrt_engine.python_func(qdq_model=Model(uri=str(out)), engine=engine, TENSORRT_OPTIONAL=True)
    assert read_skip_notice(engine.path) == TRT_MISSING
    results = Artifact(uri=str(tmp_path / "results"))
    benchmark_gpu.python_func(model=engine, dataset=Dataset(uri=str(dataset_dir)),
                              metrics=Metrics(uri=str(tmp_path / "metrics")), results=results)
    assert json.loads(Path(results.path).read_text()) == []
    printed = capsys.readouterr().out
    assert "NOTICE: TensorRT engine build skipped" in printed and "NOTICE: TensorRT benchmark skipped" in printed


def test_local_runs_make_tensorrt_optional_only_when_it_cannot_run(capsys):
    from visioncompress.pipelines.local import local_run_params
    from visioncompress.pipelines.ptq_tensorrt import ptq_tensorrt

    defaults = {p.name: p.default for p in inspect.signature(ptq_tensorrt.pipeline_func).parameters.values()}
    assert defaults["TENSORRT_OPTIONAL"] is False  # clusters fail loudly by default
    assert local_run_params({"BATCH_SIZE": 4}, {"BATCH_SIZE": 1}) == {"BATCH_SIZE": 4}  # no TensorRT branch
    explicit = {"TENSORRT_OPTIONAL": False}
    assert local_run_params(explicit, defaults) == explicit
    params = local_run_params({}, defaults)
    if TRT_MISSING is None:
        assert params == {}
    else:
        assert params == {"TENSORRT_OPTIONAL": True}
        assert "NOTICE: the TensorRT branch will be skipped in this local run" in capsys.readouterr().out


# --- GPU half, where it can run ---------------------------------------------------------------------

@needs_tensorrt
@pytest.mark.parametrize("params", [{"BATCH_SIZE": 4}, {"BATCH_SIZE": 8, "DYNAMIC_BATCH": True, "MAX_BATCH_SIZE": 32}])
def test_engine_builds_deserialises_and_matches_fp32(qdq, dataset_dir, fp32_top1, tmp_path, params):
    import tensorrt as trt

    from visioncompress.benchmark import benchmark
    from visioncompress.benchmark.tensorrt_runner import TensorRTRunner
    from visioncompress.config import BenchmarkConfig

    out, _ = qdq
    metadata = build_engine(out, tmp_path / "engine", from_spec(TensorRTConfig, params))
    assert (metadata.format, metadata.precision, metadata.backend) == ("tensorrt-engine", "int8", "tensorrt")
    path = tmp_path / "engine" / "model.engine"
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(path.read_bytes())  # the standard call
    assert engine is not None and engine.num_io_tensors == 2

    runner = TensorRTRunner(path)
    dataset = load_dataset(dataset_dir)
    for batch in (1, 3, 40):  # below, inside and above the profile: padded / split as needed
        assert runner.predict(dataset.example_input(batch)).shape == (batch, 10)
    accuracy, n = top1(runner, dataset)
    assert n == 1000 and accuracy >= fp32_top1 - MAX_TOP1_DROP, (accuracy, fp32_top1)

    rows = benchmark(tmp_path / "engine", dataset_dir, BenchmarkConfig(batch_size=params["BATCH_SIZE"],
                                                                        iterations=5, warmup=1))
    assert {r["backend"] for r in rows} == {"tensorrt"} and {r["variant"] for r in rows} == {"int8"}
    assert {r["batch_size"] for r in rows} == {1, params["BATCH_SIZE"], 32}
    assert all(r["p50_ms"] > 0 and r["size_mb"] > 0 and r["top1"] == round(accuracy, 3) for r in rows)


# --- placement in the compiled pipeline ------------------------------------------------------------------

@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    from visioncompress.pipelines.ptq_tensorrt import ptq_tensorrt

    path = tmp_path_factory.mktemp("compiled") / "ptq_tensorrt.yaml"
    compiler.Compiler().compile(ptq_tensorrt, str(path))
    return path


def test_engine_build_and_gpu_benchmark_on_gpu_nodes_calibration_on_cpu(compiled):
    spec, platform = yaml.safe_load_all(compiled.read_text())
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    executors = spec["deploymentSpec"]["executors"]
    placed = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    settings = load_settings()
    gpu = {"exec-build-tensorrt-engine", "exec-benchmark-gpu"}
    assert gpu <= set(executors) and "exec-qdq-onnx" in executors
    for name in gpu:
        container = executors[name]["container"]
        assert container["image"] == settings.image_gpu
        assert container["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert container["resources"]["accelerator"]["resourceCount"] == "1"
        assert placed[name]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
        assert placed[name]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                                "effect": "NoSchedule"}]
    # calibration, data, CPU benchmarks, report (and the fine-tune step, whose TRAIN_ON_GPU variant runs on the GPU
    # image: tests/test_train_placement.py)
    for name in {n for n in set(executors) - gpu if not n.startswith("exec-finetune")}:
        container = executors[name]["container"]
        assert container["image"] == settings.image_cpu, name
        assert "accelerator" not in container.get("resources", {}), name
        assert placed[name]["nodeSelector"]["labels"] == {"kubernetes.io/arch": "amd64"}, name
        assert "tolerations" not in placed[name], name


# --- a local run without a GPU ------------------------------------------------------------------------

@pytest.mark.slow  # a whole pipeline, task by task in subprocesses: `make test-slow`
@without_tensorrt
def test_local_run_without_gpu_skips_tensorrt_and_completes(tmp_path, capfd):
    from kfp import local

    from visioncompress.pipelines.local import local_run_params
    from visioncompress.pipelines.ptq_tensorrt import ptq_tensorrt

    defaults = {p.name: p.default for p in inspect.signature(ptq_tensorrt.pipeline_func).parameters.values()}
    params = local_run_params({"insize": 16, "MAX_TRAIN_SAMPLES": 400, "MAX_TEST_SAMPLES": 100,
                               "CALIBRATION_SAMPLES": 32, "BATCH_SIZE": 8, "MODEL": "resnet18",
                               "TRAINING": False}, defaults)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path))
    report = Path(ptq_tensorrt(**params).output.path)
    results = json.loads((report.parent / "results").read_text())
    assert {(r["variant"], r["backend"]) for r in results} == {
        ("fp32", "torch"), ("fp32", "onnxruntime"), ("int8-qdq", "onnxruntime")}
    logs = capfd.readouterr()
    printed = logs.out + logs.err
    assert "NOTICE: the TensorRT branch will be skipped in this local run" in printed
    assert "NOTICE: TensorRT engine build skipped" in printed
