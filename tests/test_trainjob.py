"""Multi-node training (NUM_NODES > 1) as a Kubeflow Trainer TrainJob or a Training Operator PyTorchJob.

Nothing here runs Kubernetes: the job objects are checked against the SDKs' own model classes (kubeflow 0.5's
``kubeflow_trainer_api``, kubeflow-training 1.9's PyTorchJob), the status logic against those models filled the
way the controllers fill them, the node's torchrun command against torch's own argument parser, and the
object-storage glue (inputs down, outputs up, the step's download) against the moto S3 server.
"""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from kfp import dsl

from visioncompress.errors import ConfigError
from visioncompress.settings import load_settings
from visioncompress.train import cluster, cluster_worker

from test_storage import bucket, raw_client, s3_env, s3_server  # noqa: F401  (the moto S3 server fixtures)

pytest.importorskip("kubeflow.trainer")
pytest.importorskip("kubeflow.training")

ROOT = "minio://mlpipeline/v2/artifacts/visioncompress-prune/3f1c/"
PARAMS = {"NUM_NODES": 4, "GPUS_PER_NODE": 2, "TRAIN_ON_GPU": True, "FINETUNE_EPOCHS": 3, "BATCH_SIZE": 64,
          "DEVICE": "auto", "AMP": True, "_params": "internal"}


def _prune_artifacts():
    return {"model": dsl.Model(uri=ROOT + "finetune/model"), "dataset": dsl.Dataset(uri=ROOT + "data-prep/dataset"),
            "pruned_model": dsl.Model(uri=ROOT + "prune/pruned_model"),
            "metrics": dsl.Metrics(uri=ROOT + "prune/metrics")}


@pytest.fixture
def request_gpu(monkeypatch):
    for name in ("VC_TRAIN_JOB_KIND", "VC_TRAIN_RUNTIME", "VC_S3_SECRET", "VC_S3_SECRET_KEYS", "VC_IN_TRAIN_JOB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VC_S3_ENDPOINT", "minio-service.kubeflow:9000")
    return cluster.make_request("prune", _prune_artifacts(), PARAMS, namespace="team-a")


def _env(container_env):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container_env}


def test_trainjob_is_a_valid_sdk_object_with_nodes_gpus_image_command_and_env(request_gpu):
    from kubeflow_trainer_api import models as m

    body = cluster.manifest(request_gpu)
    job = m.TrainerV1alpha1TrainJob.from_dict(body)  # the SDK's model validates types and field names
    assert job.to_dict() == body
    assert (body["apiVersion"], body["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert body["metadata"]["namespace"] == "team-a" and body["metadata"]["name"].startswith("vc-prune-")
    assert body["spec"]["runtimeRef"] == {"name": "torch-distributed", "kind": "ClusterTrainingRuntime",
                                          "apiGroup": "trainer.kubeflow.org"}
    trainer = body["spec"]["trainer"]
    settings = load_settings()
    assert trainer["numNodes"] == 4 and trainer["numProcPerNode"] == 2
    assert trainer["image"] == settings.image_gpu
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "2"
    assert trainer["resourcesPerNode"]["requests"] == {"cpu": "2", "memory": "4G", "nvidia.com/gpu": "2"}
    assert trainer["command"] == ["python", "-m", "visioncompress.train.cluster_worker"]
    spec = json.loads(trainer["args"][0])
    assert spec["stage"] == "prune" and spec["num_nodes"] == 4 and spec["procs_per_node"] == 2
    assert spec["inputs"] == {"model": ROOT + "finetune/model", "dataset": ROOT + "data-prep/dataset"}
    assert spec["outputs"] == {"pruned_model": ROOT + "prune/pruned_model.job"}  # metrics: logged by the step
    assert spec["params"]["FINETUNE_EPOCHS"] == 3 and "_params" not in spec["params"]
    env = _env(trainer["env"])
    assert env["VC_IN_TRAIN_JOB"] == "1" and env["VC_S3_ENDPOINT"] == "minio-service.kubeflow:9000"
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "visioncompress-s3", "key": "AWS_ACCESS_KEY_ID"}}
    (patch,) = body["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = node["template"]["spec"]["template"]["spec"]
    assert node["name"] == "node"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert body["spec"]["activeDeadlineSeconds"] == settings.timeouts["train"]


def test_a_retried_step_names_the_same_job_and_cpu_jobs_use_the_cpu_pool(request_gpu):
    again = cluster.make_request("prune", _prune_artifacts(), PARAMS, namespace="team-a")
    assert again.name == request_gpu.name and len(again.name) <= 63
    cpu = cluster.make_request("prune", _prune_artifacts(), {**PARAMS, "TRAIN_ON_GPU": False}, namespace="team-a")
    trainer = cluster.manifest(cpu)["spec"]["trainer"]
    assert trainer["image"] == load_settings().image_cpu
    assert "nvidia.com/gpu" not in trainer["resourcesPerNode"]["limits"]
    pod = cluster.manifest(cpu)["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"][
        "replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert pod == {"nodeSelector": {"kubernetes.io/arch": "amd64"}}


def test_pytorchjob_is_a_valid_sdk_object(request_gpu, monkeypatch):
    from kubeflow.training import models as m
    from kubeflow.training.api_client import ApiClient
    from kubeflow.training.utils import utils

    monkeypatch.setenv("VC_TRAIN_JOB_KIND", "pytorchjob")
    request = cluster.make_request("prune", _prune_artifacts(), PARAMS, namespace="team-a")
    body = cluster.manifest(request)
    job = ApiClient().deserialize(utils.FakeResponse(body), m.KubeflowOrgV1PyTorchJob)
    assert ApiClient().sanitize_for_serialization(job) == body
    assert (body["apiVersion"], body["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    replicas = job.spec.pytorch_replica_specs
    assert replicas["Master"].replicas == 1 and replicas["Worker"].replicas == 3  # 4 nodes
    for replica in replicas.values():
        (container,) = replica.template.spec.containers
        assert container.name == "pytorch" and container.image == load_settings().image_gpu
        assert container.resources.limits["nvidia.com/gpu"] == "2"
        assert json.loads(container.args[0])["procs_per_node"] == 2
        assert replica.restart_policy == "Never"
        assert replica.template.spec.node_selector == {"nvidia.com/gpu.present": "true"}
        assert replica.template.spec.tolerations[0].key == "nvidia.com/gpu"
        secret = next(e for e in container.env if e.name == "AWS_SECRET_ACCESS_KEY")
        assert secret.value_from.secret_key_ref.name == "visioncompress-s3"
    assert job.spec.run_policy.active_deadline_seconds == load_settings().timeouts["train"]


def test_status_is_read_from_the_controllers_conditions():
    base = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
            "metadata": {"name": "vc-prune-1", "namespace": "team-a"},
            "spec": {"runtimeRef": {"name": "torch-distributed"}}}
    when = "2026-11-30T10:00:00Z"
    assert cluster.job_state("trainjob", base) == cluster.JobState("Pending")
    running = {**base, "status": {"jobsStatus": [{"name": "node", "active": 4, "ready": 4, "failed": 0,
                                                  "succeeded": 0, "suspended": 0}]}}
    assert cluster.job_state("trainjob", running).phase == "Running"
    failed = {**base, "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "JobSetFailed",
                                                 "message": "jobset failed: node-0 exited 2",
                                                 "lastTransitionTime": when}]}}
    state = cluster.job_state("trainjob", failed)
    assert state.phase == "Failed" and state.done and "node-0 exited 2" in state.message
    complete = {**base, "status": {"conditions": [{"type": "Complete", "status": "True", "reason": "JobSetCompleted",
                                                   "message": "", "lastTransitionTime": when}]}}
    assert cluster.job_state("trainjob", complete).phase == "Succeeded"

    torch_job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "vc-prune-1"},
                 "spec": {"pytorchReplicaSpecs": {}, "runPolicy": {}}, "status": {"conditions": [
                     {"type": "Created", "status": "True", "reason": "PyTorchJobCreated"},
                     {"type": "Running", "status": "False", "reason": "PyTorchJobRunning"},
                     {"type": "Failed", "status": "True", "reason": "PyTorchJobFailed",
                      "message": "PyTorchJob vc-prune-1 is failed because 1 Master replica(s) failed."}]}}
    state = cluster.job_state("pytorchjob", torch_job)
    assert state.phase == "Failed" and "Master replica(s) failed" in state.message
    torch_job["status"]["conditions"][1]["status"] = "True"
    del torch_job["status"]["conditions"][2]
    assert cluster.job_state("pytorchjob", torch_job).phase == "Running"


def test_failure_is_the_workers_own_line():
    state = cluster.JobState("Failed", "JobSetFailed: node-0 exited 2")
    tail = ["epoch 1 loss 0.3", "visioncompress: prune: TARGET_PRUNE_RATE=1.5 is not allowed; expected (0, 1)",
            "[rank0] exiting"]
    assert cluster.failure_message(state, tail) == "prune: TARGET_PRUNE_RATE=1.5 is not allowed; expected (0, 1)"
    assert cluster.failure_message(state, ["Traceback ..."]) == "JobSetFailed: node-0 exited 2"


def test_multi_node_needs_object_storage_inputs_and_is_not_nested(monkeypatch, tmp_path):
    monkeypatch.delenv("VC_IN_TRAIN_JOB", raising=False)
    assert not cluster.wanted({"NUM_NODES": 1}) and cluster.wanted({"NUM_NODES": 2})
    local = {**_prune_artifacts(), "dataset": dsl.Dataset(uri=str(tmp_path / "dataset"))}
    with pytest.raises(ConfigError, match="NUM_NODES=4 .*input 'dataset' is at /"):
        cluster.make_request("prune", local, PARAMS)
    monkeypatch.setenv("VC_IN_TRAIN_JOB", "1")
    assert not cluster.wanted({"NUM_NODES": 2}), "inside the job the training entry must not submit another"


def test_node_rendezvous_from_either_controller_and_torchrun_accepts_it():
    from torch.distributed.run import get_args_parser

    spec = {"num_nodes": 4, "procs_per_node": 2}
    trainer_env = {"PET_NODE_RANK": "3", "PET_MASTER_ADDR": "vc-prune-1-node-0-0.vc-prune-1",
                   "PET_MASTER_PORT": "29400", "PET_NNODES": "4", "PET_NPROC_PER_NODE": "2"}
    operator_env = {"RANK": "0", "MASTER_ADDR": "vc-prune-1-master-0", "MASTER_PORT": "23456", "WORLD_SIZE": "4"}
    for env, rank, master, port in ((trainer_env, 3, "vc-prune-1-node-0-0.vc-prune-1", 29400),
                                    (operator_env, 0, "vc-prune-1-master-0", 23456)):
        rdzv = cluster_worker.rendezvous(env, spec)
        args = get_args_parser().parse_args(cluster_worker.torchrun_command(rdzv, "/tmp/spec.json")[3:])
        assert (args.nnodes, args.nproc_per_node, args.node_rank) == ("4", "2", rank)
        assert (args.master_addr, args.master_port, args.module) == (master, port, True)
        assert (args.training_script, args.training_script_args) == ("visioncompress.train.launch", ["/tmp/spec.json"])
    with pytest.raises(ConfigError, match="NUM_NODES"):
        cluster_worker.rendezvous({}, spec)


def test_inputs_down_outputs_up_and_the_step_collects_them(s3_env, bucket, fp32_model_dir, dataset_dir, tmp_path):
    from visioncompress.artifacts import read_model_metadata
    from visioncompress.storage.s3 import list_keys, upload_dir

    root = f"s3://{bucket}/v2/artifacts/p/run1/"
    upload_dir(dataset_dir, root + "data-prep/dataset/")
    upload_dir(fp32_model_dir, root + "finetune/model/")
    artifacts = {"dataset": dsl.Dataset(uri=root + "data-prep/dataset"),
                 "model": dsl.Model(uri=root + "finetune/model"),
                 "pruned_model": SimpleNamespace(uri=root + "prune/pruned_model", path=str(tmp_path / "out" / "pm"),
                                                 metadata={}),
                 "metrics": dsl.Metrics(uri=root + "prune/metrics")}
    request = cluster.make_request("prune", artifacts, PARAMS, namespace="team-a")
    spec = json.loads(request.args()[0])

    local = cluster_worker.localize(spec, tmp_path / "node0")  # what each node does first
    for name, source in (("dataset", dataset_dir), ("model", fp32_model_dir)):
        got = Path(local["inputs"][name])
        assert sorted(p.relative_to(got).as_posix() for p in got.rglob("*") if p.is_file()) == sorted(
            p.relative_to(source).as_posix() for p in Path(source).rglob("*") if p.is_file())
    shutil.copytree(fp32_model_dir, local["outputs"]["pruned_model"])  # stands for what rank 0 wrote
    cluster_worker.upload_outputs(local, spec)  # node 0, after torchrun
    assert list_keys(spec["outputs"]["pruned_model"] + "/")

    cluster.collect(request, artifacts)  # the step, after the job completed
    cluster.describe_outputs(artifacts, request)
    out = Path(artifacts["pruned_model"].path)
    assert read_model_metadata(out).architecture == read_model_metadata(fp32_model_dir).architecture
    assert artifacts["pruned_model"].metadata["architecture"] == read_model_metadata(fp32_model_dir).architecture
    assert not list_keys(spec["outputs"]["pruned_model"] + "/"), "the staged copy is removed once collected"


def test_log_chunks_become_whole_lines():
    chunks = ["epoch 1 lo", "ss 0.3\nvisioncompress: prune: bad", " input\n", "last line without newline"]
    assert list(cluster._lines(chunks)) == ["epoch 1 loss 0.3", "visioncompress: prune: bad input",
                                            "last line without newline"]
