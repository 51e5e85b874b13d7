"""Compiled pipelines as a platform team receives them: fresh, valid, placed, time-limited, retried,
cached only where a recurring run wants it, every parameter described and reaching a task."""

import json
import re
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp import compiler, dsl
from kfp.pipeline_spec import pipeline_spec_pb2

from visioncompress.config.catalog import PARAMS
from visioncompress.config.pipelines import PIPELINES
from visioncompress.pipelines.compile import COMPILED_DIR, compile_pipeline, compile_pipelines
from visioncompress.pipelines.placement import on_gpu
from visioncompress.settings import load_settings

NAMES = sorted(PIPELINES)


def _docs(path):
    return list(yaml.safe_load_all(Path(path).read_text()))


def _compiled(name):
    return _docs(COMPILED_DIR / f"{name}.yaml")


def _tasks(spec):
    """(dag name, task name, task) for every task of every DAG, conditions included."""
    dags = {"root": spec["root"]["dag"]}
    dags.update({name: c["dag"] for name, c in spec.get("components", {}).items() if "dag" in c})
    return [(dag_name, task_name, task) for dag_name, dag in dags.items() for task_name, task in dag["tasks"].items()]


def _executor_of(spec, task):
    return spec["components"][task["componentRef"]["name"]].get("executorLabel")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    compile_pipelines(output_dir=out)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_compiled_yaml_is_not_stale(fresh, name):
    checked_in = COMPILED_DIR / f"{name}.yaml"
    assert checked_in.is_file(), f"run `make compile`: {checked_in} is missing"
    assert (fresh / f"{name}.yaml").read_text() == checked_in.read_text(), f"run `make compile`: {name} is stale"


@pytest.mark.parametrize("name", NAMES)
def test_compiled_yaml_is_valid_placed_on_well_known_labels_and_time_limited(name):
    spec, platform = _compiled(name)
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())  # unknown fields or wrong types raise
    executors = spec["deploymentSpec"]["executors"]
    placed = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    settings = load_settings()
    assert settings.cpu_node_selector == ("kubernetes.io/arch", "amd64")
    assert settings.gpu_node_selector == ("nvidia.com/gpu.present", "true")
    assert set(placed) == set(executors)
    for executor_name, executor in executors.items():
        container, resources = executor["container"], executor["container"]["resources"]
        assert resources["cpuRequest"] > 0 and resources["memoryRequest"] > 0
        assert int(placed[executor_name]["activeDeadlineSeconds"]) > 0, f"{executor_name} has no timeout"
        if "accelerator" in resources:  # TensorRT engine build and GPU benchmark
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
            assert container["image"] == settings.image_gpu
            assert placed[executor_name]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
            assert placed[executor_name]["tolerations"] == [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        else:  # the detection pipelines' CPU steps: the detection image (the CPU stack plus OpenMMLab)
            assert container["image"] == (settings.image_detection if PIPELINES[name].task == "detection"
                                          else settings.image_cpu)
            assert placed[executor_name]["nodeSelector"]["labels"] == {"kubernetes.io/arch": "amd64"}
            assert "tolerations" not in placed[executor_name]


@pytest.mark.parametrize("name", NAMES)
def test_retries_and_caching_fit_a_recurring_run(name):
    spec, _ = _compiled(name)
    seen = set()
    for _, task_name, task in _tasks(spec):
        ref = task["componentRef"]["name"]
        stage = re.sub(r"^comp-|-\d+$", "", ref).replace("-", "_")
        seen.add(stage)
        cached = task.get("cachingOptions", {}).get("enableCache", False)
        if stage in ("benchmark", "benchmark_gpu", "report", "publish"):
            assert not cached, f"{task_name} must never be served from the cache"
        if stage in ("data_prep", "finetune", "quantize_torch", "quantize_onnx", "quantize_openvino", "prune"):
            assert cached, f"{task_name} should be cached on identical inputs"
        if stage in ("data_prep", "publish", "build_tensorrt_engine", "benchmark_gpu"):
            policy = task.get("retryPolicy", {})
            assert policy.get("maxRetryCount", 0) >= 1 and policy.get("backoffFactor", 0) > 1, task_name
        if stage in ("report", "benchmark", "quantize_torch"):
            assert "retryPolicy" not in task, f"{task_name} touches no network or GPU: no retries"
    assert {"data_prep", "finetune", "benchmark", "report", "publish"} <= seen


def test_schedule_compile_recomputes_everything_after_data_preparation(tmp_path):
    spec, _ = _docs(compile_pipeline("compare", tmp_path / "c.yaml", recompute_after_data=True))
    cached = {task["componentRef"]["name"] for _, _, task in _tasks(spec)
              if task.get("cachingOptions", {}).get("enableCache")}
    assert cached == {"comp-data-prep"}


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_is_described_and_reaches_a_task(name):
    spec, _ = _compiled(name)
    declared = spec["root"]["inputDefinitions"]["parameters"]
    assert set(declared) == {p.name for p in PIPELINES[name].parameters()}
    for parameter, definition in declared.items():
        assert definition.get("description", "").strip(), f"{name}: {parameter} has no description"
    used = set()
    for _, _, task in _tasks(spec):
        for value in task.get("inputs", {}).get("parameters", {}).values():
            if "componentInputParameter" in value:
                used.add(value["componentInputParameter"])
    # a task inside a condition reads pipeline parameters through the condition's pipelinechannel inputs
    used = {u.removeprefix("pipelinechannel--") for u in used}
    assert set(declared) <= used, f"{name}: parameters that reach no task: {sorted(set(declared) - used)}"


@pytest.mark.parametrize("name", NAMES)
def test_seed_reaches_data_preparation_and_training(name):
    spec, _ = _compiled(name)
    readers = {task["componentRef"]["name"] for _, _, task in _tasks(spec)
               if task.get("inputs", {}).get("parameters", {}).get("SEED", {}).get("componentInputParameter")
               in ("SEED", "pipelinechannel--SEED")}
    assert {"comp-data-prep", "comp-finetune"} <= readers


def test_compare_all_runs_tensorrt_only_when_asked():
    spec, _ = _compiled("compare_all")
    assert spec["root"]["inputDefinitions"]["parameters"]["USE_TENSORRT"]["defaultValue"] is False
    gated = [(dag, task) for dag, _, task in _tasks(spec) if task["componentRef"]["name"].startswith(
        ("comp-build-tensorrt-engine", "comp-benchmark-gpu", "comp-qdq-onnx"))]
    assert len(gated) == 3 and all(dag != "root" for dag, _ in gated), "TensorRT steps must sit under a condition"
    conditions = [task["triggerPolicy"]["condition"] for _, _, task in _tasks(spec) if "triggerPolicy" in task]
    assert any("USE_TENSORRT" in c for c in conditions)


def test_presets_and_spec_defaults_in_compiled_parameters():
    params = _compiled("compare")[0]["root"]["inputDefinitions"]["parameters"]
    defaults = {name: p.get("defaultValue") for name, p in params.items()}
    assert defaults["insize"] == 32 and defaults["BATCH_SIZE"] == 1 and defaults["OPTIMIZER"] == "Adam"
    assert defaults["quant_format"] == "QuantFormat.QDQ" and defaults["choice"] == "static"
    assert defaults["TRANSFORMER"] is True and defaults["LEARNING_RATE"] == 0.001 and defaults["SEED"] == 43
    detect = {n: p.get("defaultValue") for n, p in _compiled("detect_prune")[0]["root"]["inputDefinitions"][
        "parameters"].items()}
    assert detect["insize"] == 128 and detect["MODEL"] == "fcos_resnet18_fpn"


def test_every_catalog_parameter_is_used_somewhere():
    from visioncompress.stages import STAGES

    used = {p.name for s in STAGES.values() for p in s.parameters()}
    used |= {p.name for spec in PIPELINES.values() for p in spec.parameters()}
    assert set(PARAMS) == used, f"declared but never read: {sorted(set(PARAMS) - used)}"


def test_s3_endpoint_is_a_run_parameter_defaulting_to_the_cluster_store():
    params = _compiled("ptq_torch")[0]["root"]["inputDefinitions"]["parameters"]
    assert {"S3_ENDPOINT", "S3_SECURE", "S3_REGION"} <= set(params)
    assert "minio-service.kubeflow:9000" in params["S3_ENDPOINT"]["description"]
    from visioncompress.storage.s3 import load_storage_settings

    settings = load_storage_settings({})
    assert (settings.endpoint, settings.secure) == ("minio-service.kubeflow:9000", False)


def test_generated_docs_are_up_to_date():
    from visioncompress.docs import main

    assert main(["--root", str(COMPILED_DIR.parents[1]), "--check"]) == 0, "run `python -m visioncompress.docs`"


def test_gpu_placement_follows_the_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("VC_GPU_NODE_SELECTOR", "cloud.google.com/gke-accelerator=nvidia-h100-80gb")
    monkeypatch.setenv("VC_GPU_TOLERATION", "nvidia.com/gpu=present:NoSchedule")

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
    placed = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-gpu-step"]
    assert placed["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert placed["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present",
                                      "effect": "NoSchedule"}]


def test_local_compare_run_produces_every_artifact(tmp_path):
    from visioncompress.artifacts import read_model_metadata
    from visioncompress.pipelines.local import run_local

    report = run_local("compare", {
        "insize": 16, "MAX_TRAIN_SAMPLES": 500, "MAX_TEST_SAMPLES": 200, "CALIBRATION_SAMPLES": 64,
        "BATCH_SIZE": 16, "MODEL": "mobilenet_v3_small", "TRANSFORMER": False, "SEED": 7,
    }, tmp_path)
    run_dir = report.parent.parent
    manifest = json.loads((run_dir / "data-prep" / "dataset" / "manifest.json").read_text())
    assert json.dumps(manifest).count('"seed": 7') >= 1, "SEED must reach data preparation"
    formats = {read_model_metadata(p).format for p in run_dir.glob("*/*model") if p.is_dir()}
    assert {"torchscript", "onnx", "openvino-ir"} <= formats
    assert json.loads((run_dir / "finetune" / "model" / "model.json").read_text())["params"]["SEED"] == 7
    results = json.loads((report.parent / "results").read_text())
    pairs = {(r["variant"], r["backend"]) for r in results}
    assert pairs >= {("fp32", "torch"), ("fp32", "onnxruntime"), ("fp32", "openvino"),
                     ("int8", "torch"), ("int8", "onnxruntime"), ("int8", "openvino")}
    # the float forms this CPU runs natively are rows of their own (eager PyTorch, BF16/FP16 where available)
    assert pairs - {(v, b) for v in ("fp32", "int8") for b in ("torch", "onnxruntime", "openvino")} <= {
        ("fp32-eager", "torch"), ("bf16", "torch"), ("bf16", "openvino"), ("fp16", "openvino")}
    assert ("fp32-eager", "torch") in pairs
    text = report.read_text()
    assert "| variant | backend |" in text and "intra-op thread" in text


def test_storage_access_comes_from_the_secret_and_compile_settings(tmp_path):
    """Settings are read when the pipeline modules are built: compile in a fresh process, as `make compile` does."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "VC_S3_SECRET": "team-bucket", "VC_S3_ENDPOINT": "https://minio.storage.svc:9000",
           "VC_S3_SECRET_KEYS": "accesskey=AWS_ACCESS_KEY_ID,secretkey=AWS_SECRET_ACCESS_KEY",
           "AWS_SECRET_ACCESS_KEY": "compile-time-secret"}
    subprocess.run([sys.executable, "-m", "visioncompress.pipelines.compile", "ptq_onnx", "--output-dir",
                    str(tmp_path)], env=env, check=True, capture_output=True)
    spec, platform = _docs(tmp_path / "ptq_onnx.yaml")
    placed = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for executor, optional in (("exec-publish", False), ("exec-data-prep", True), ("exec-finetune", True)):
        secret = placed[executor]["secretAsEnv"][0]
        assert secret["secretNameParameter"]["runtimeValue"]["constant"] == "team-bucket"
        assert secret.get("optional", False) is optional, executor
        assert {(m["secretKey"], m["envVar"]) for m in secret["keyToEnv"]} == \
            {("accesskey", "AWS_ACCESS_KEY_ID"), ("secretkey", "AWS_SECRET_ACCESS_KEY")}
        env = spec["deploymentSpec"]["executors"][executor]["container"]["env"]
        assert {"name": "VC_S3_ENDPOINT", "value": "https://minio.storage.svc:9000"} in env
    assert "secretAsEnv" not in placed["exec-benchmark"]
    assert "compile-time-secret" not in (tmp_path / "ptq_onnx.yaml").read_text(), "credentials never reach the YAML"
    condition = next(t for n, t in spec["root"]["dag"]["tasks"].items() if n.startswith("condition"))
    assert "DESTINATION" in condition["triggerPolicy"]["condition"]


def test_local_runs_do_not_retry_a_failed_step():
    """On a cluster data preparation retries with back-off; a local run ends at the first failure instead."""
    from visioncompress.pipelines.local import without_retries
    from visioncompress.pipelines.registry import get_pipeline

    def retries(pipeline):
        spec = pipeline.component_spec.implementation.graph
        dags = [spec.root.dag] + [c.dag for c in spec.components.values() if c.HasField("dag")]
        return {name: t.retry_policy.max_retry_count for d in dags for name, t in d.tasks.items()}

    compiled = get_pipeline("compare")
    assert retries(compiled)["data-prep"] == 3 and retries(compiled)["publish"] == 3
    assert set(retries(without_retries(compiled)).values()) == {0}
    assert retries(compiled)["data-prep"] == 3, "the pipeline itself (what compile writes) keeps its retries"
