"""Compiled pipelines: fresh, valid, placed on CPU nodes; the GPU placement helper; a local run."""

import json
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp import compiler, dsl
from kfp.pipeline_spec import pipeline_spec_pb2

from pipelines.compile import COMPILED_DIR, compile_pipelines
from pipelines.placement import on_gpu
from pipelines.registry import PIPELINES
from visioncompress.settings import load_settings


def _docs(path):
    return list(yaml.safe_load_all(Path(path).read_text()))


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    compile_pipelines(output_dir=out)
    return out


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_compiled_yaml_is_not_stale(fresh, name):
    checked_in = COMPILED_DIR / f"{name}.yaml"
    assert checked_in.is_file(), f"run `make compile`: {checked_in} is missing"
    assert (fresh / f"{name}.yaml").read_text() == checked_in.read_text(), f"run `make compile`: {name} is stale"


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_compiled_yaml_is_valid_and_on_cpu_nodes(name):
    spec, platform = _docs(COMPILED_DIR / f"{name}.yaml")
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())  # unknown fields or wrong types raise
    executors = spec["deploymentSpec"]["executors"]
    placed = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    settings = load_settings()
    assert set(placed) == set(executors)
    for executor_name, executor in executors.items():
        container, resources = executor["container"], executor["container"]["resources"]
        assert resources["cpuRequest"] > 0 and resources["memoryRequest"] > 0
        if "accelerator" in resources:  # TensorRT engine build and GPU benchmark
            assert resources["accelerator"]["resourceType"] == settings.gpu_accelerator
            assert container["image"] == settings.image_gpu
            assert placed[executor_name]["nodeSelector"]["labels"] == dict([settings.gpu_node_selector])
            assert placed[executor_name]["tolerations"][0]["key"] == settings.gpu_toleration.key
        else:
            assert container["image"] == settings.image_cpu
            assert placed[executor_name]["nodeSelector"]["labels"] == dict([settings.cpu_node_selector])


def test_tensorrt_steps_are_on_gpu_nodes():
    spec, _ = _docs(COMPILED_DIR / "ptq_tensorrt.yaml")
    executors = spec["deploymentSpec"]["executors"]
    on_gpu = {name for name, e in executors.items() if "accelerator" in e["container"]["resources"]}
    assert on_gpu == {"exec-build-tensorrt-engine", "exec-benchmark-gpu"}
    assert "exec-qdq-onnx" in executors


def test_spec_defaults_in_compiled_parameters():
    spec, _ = _docs(COMPILED_DIR / "compare.yaml")
    params = spec["root"]["inputDefinitions"]["parameters"]
    defaults = {name: p.get("defaultValue") for name, p in params.items()}
    assert defaults["insize"] == 32 and defaults["BATCH_SIZE"] == 1 and defaults["OPTIMIZER"] == "Adam"
    assert defaults["quant_format"] == "QuantFormat.QDQ" and defaults["choice"] == "static"
    assert defaults["TRANSFORMER"] is True and defaults["LEARNING_RATE"] == 0.001


def test_gpu_placement_compiles(tmp_path, monkeypatch):
    monkeypatch.setenv("VC_GPU_NODE_SELECTOR", "cloud.google.com/gke-accelerator=nvidia-h100-80gb")

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def gpu_step() -> str:
        return "ok"

    @dsl.pipeline(name="gpu-placement")
    def gpu_pipeline():
        on_gpu(gpu_step())

    path = tmp_path / "gpu.yaml"
    compiler.Compiler().compile(gpu_pipeline, str(path))
    spec, platform = _docs(path)
    resources = spec["deploymentSpec"]["executors"]["exec-gpu-step"]["container"]["resources"]
    assert resources["accelerator"]["resourceCount"] == "1"
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    placed = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-gpu-step"]
    assert placed["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert placed["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert placed["tolerations"][0]["effect"] == "NoSchedule"


def test_local_compare_run_produces_every_artifact(tmp_path):
    from pipelines.local import run_local
    from visioncompress.artifacts import read_model_metadata

    report = run_local("compare", {
        "insize": 16, "MAX_TRAIN_SAMPLES": 500, "MAX_TEST_SAMPLES": 200, "CALIBRATION_SAMPLES": 64,
        "BATCH_SIZE": 16, "MODEL": "mobilenet_v3_small", "TRANSFORMER": False,
    }, tmp_path)
    run_dir = report.parent.parent
    assert (run_dir / "data-prep" / "dataset" / "manifest.json").is_file()
    formats = {read_model_metadata(p).format for p in run_dir.glob("*/*model") if p.is_dir()}
    assert formats == {"torch-module", "torchscript", "onnx", "openvino-ir"}
    results = json.loads((report.parent / "results").read_text())
    assert {(r["variant"], r["backend"]) for r in results} == {
        ("fp32", "torch"), ("fp32", "onnxruntime"), ("fp32", "openvino"),
        ("int8", "torch"), ("int8", "onnxruntime"), ("int8", "openvino")}
    assert "| variant | backend |" in report.read_text()
