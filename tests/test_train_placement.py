"""Training stages are placed by run parameters: CPU pool, GPU pool (TRAIN_ON_GPU) or a small submitter of a
multi-node job (NUM_NODES > 1), read from the compiled YAML of every pipeline."""

import re
from pathlib import Path

import pytest
import yaml

from visioncompress.config.pipelines import PIPELINES
from visioncompress.pipelines.compile import COMPILED_DIR
from visioncompress.settings import load_settings
from visioncompress.stages import STAGES

TRAINING = {name for name, stage in STAGES.items() if stage.kind == "train"}
NAMES = sorted(PIPELINES)


def _compiled(name):
    return list(yaml.safe_load_all(Path(COMPILED_DIR / f"{name}.yaml").read_text()))


def _stage_of(component_ref: str) -> str:
    return re.sub(r"^comp-|-\d+$", "", component_ref).replace("-", "_")


def _training_placements(spec, platform):
    """{stage: {branch condition: (executor, kubernetes executor config)}} for every training task."""
    components = spec["components"]
    conditions = {}  # condition component -> its trigger condition
    for comp in components.values():
        for task in comp.get("dag", {}).get("tasks", {}).values():
            if "triggerPolicy" in task:
                conditions[task["componentRef"]["name"]] = task["triggerPolicy"]["condition"]
    placed = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    found = {}
    dags = {"root": spec["root"]["dag"], **{n: c["dag"] for n, c in components.items() if "dag" in c}}
    for dag_name, dag in dags.items():
        for task in dag["tasks"].values():
            ref = task["componentRef"]["name"]
            if _stage_of(ref) not in TRAINING:
                continue
            executor = components[ref]["executorLabel"]
            found.setdefault(_stage_of(ref), {})[conditions.get(dag_name, "")] = (
                spec["deploymentSpec"]["executors"][executor]["container"], placed[executor])
    return found


def _branch(branches, which):
    """The branch run when the CPU pool / the submitter / the GPU pool is asked for (KFP's condition strings)."""
    tests = {"cpu": lambda c: "TRAIN_ON_GPU'] == false" in c and not c.startswith("!("),
             "submitter": lambda c: c.startswith("!(") and "&& int(inputs.parameter_values['pipelinechannel--"
                                                           "NUM_NODES']) > 1" in c,
             "gpu": lambda c: c.startswith("!(") and "&& !(int(" in c}
    (match,) = [v for c, v in branches.items() if tests[which](c)]
    return match


@pytest.mark.parametrize("name", NAMES)
def test_training_steps_go_to_the_pool_the_run_asks_for(name):
    spec, platform = _compiled(name)
    settings = load_settings()
    placements = _training_placements(spec, platform)
    assert placements, f"{name} has no training stage"
    from visioncompress.config.pipelines import PIPELINES

    cpu_image = settings.image_detection if PIPELINES[name].task == "detection" else settings.image_cpu
    declared = spec["root"]["inputDefinitions"]["parameters"]
    assert declared["TRAIN_ON_GPU"]["defaultValue"] is False and declared["NUM_NODES"]["defaultValue"] == 1
    for stage, branches in placements.items():
        assert len(branches) == 3, f"{name}/{stage}: expected CPU, submitter and GPU branches, got {list(branches)}"
        assert "" not in branches, f"{name}/{stage}: a training task outside the placement condition"

        container, k8s = _branch(branches, "cpu")  # TRAIN_ON_GPU=False: CPU pool
        assert container["image"] == cpu_image and "accelerator" not in container["resources"]
        assert k8s["nodeSelector"]["labels"] == {"kubernetes.io/arch": "amd64"} and "tolerations" not in k8s
        assert container["resources"]["resourceCpuRequest"] == settings.cpu_request

        container, k8s = _branch(branches, "submitter")  # multi-node GPU: a small submitter on CPU
        assert container["image"] == cpu_image and "accelerator" not in container["resources"]
        assert k8s["nodeSelector"]["labels"] == {"kubernetes.io/arch": "amd64"} and "tolerations" not in k8s
        assert container["resources"]["resourceCpuRequest"] == "500m"
        assert [s["optional"] for s in k8s["secretAsEnv"]] == [False], "the job's inputs live in object storage"

        container, k8s = _branch(branches, "gpu")  # TRAIN_ON_GPU=True, NUM_NODES=1: GPU pool, GPUS_PER_NODE GPUs
        accelerator = container["resources"]["accelerator"]
        assert container["image"] == settings.image_gpu
        assert accelerator["resourceType"] == "nvidia.com/gpu"
        assert accelerator["resourceCount"] == "{{$.inputs.parameters['pipelinechannel--GPUS_PER_NODE']}}"
        assert k8s["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
        assert k8s["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_the_step_after_training_reads_whichever_branch_ran():
    spec, _ = _compiled("prune")
    components = spec["components"]
    finetune_oneof = [(name, key) for name, comp in components.items()
                      for key, out in comp.get("dag", {}).get("outputs", {}).get("artifacts", {}).items()
                      if [s["producerSubtask"] for s in out["artifactSelectors"]] == ["condition-2", "condition-3",
                                                                                        "condition-4"]]
    assert len(finetune_oneof) == 1, finetune_oneof
    oneof = finetune_oneof[0][1]
    # every pruning task (three branches) takes its model from that one-of, never from one fine-tune branch
    prune_refs = [t for c in components.values() for t in c.get("dag", {}).get("tasks", {}).values()
                  if _stage_of(t["componentRef"]["name"]) == "prune"]
    assert len(prune_refs) == 3
    for task in prune_refs:
        source = task["inputs"]["artifacts"]["model"]["componentInputArtifact"]
        assert source.endswith(oneof), source


def test_job_settings_set_at_compile_time_travel_on_the_training_tasks(tmp_path):
    """Settings are read when the pipeline modules are built: compile in a fresh process, as `make compile` does."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "VC_TRAIN_JOB_KIND": "pytorchjob", "VC_TRAIN_NAMESPACE": "ml-jobs"}
    subprocess.run([sys.executable, "-m", "visioncompress.pipelines.compile", "prune", "--output-dir",
                    str(tmp_path)], env=env, check=True, capture_output=True)
    spec, _ = yaml.safe_load_all((tmp_path / "prune.yaml").read_text())
    carried = []
    for executor_name, executor in spec["deploymentSpec"]["executors"].items():
        env = {e["name"]: e["value"] for e in executor["container"].get("env", [])}
        if executor_name.startswith(("exec-finetune", "exec-prune")):
            assert env["VC_TRAIN_JOB_KIND"] == "pytorchjob" and env["VC_TRAIN_NAMESPACE"] == "ml-jobs"
            carried.append(executor_name)
        else:
            assert "VC_TRAIN_JOB_KIND" not in env, executor_name
    assert len(carried) == 6  # fine-tune and prune, three placements each
