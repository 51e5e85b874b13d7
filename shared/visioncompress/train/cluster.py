"""A training stage as a multi-node job on Kubeflow's training engine (``NUM_NODES`` > 1).

The pipeline step (the same component as a single-node run) submits a Kubeflow Trainer v2 ``TrainJob``
(``VC_TRAIN_JOB_KIND=trainjob``, the default; runtime ``VC_TRAIN_RUNTIME``, default ``torch-distributed``) or a
Training Operator ``PyTorchJob`` (``pytorchjob``) of ``NUM_NODES`` nodes x ``GPUS_PER_NODE`` processes, prints its
status changes and node 0's log, fails with the job's own one-line error, and downloads what rank 0 uploaded
into its output artifacts. A retried step finds its job by name (derived from the output URI) and attaches to
it instead of starting another; a failed one is replaced.

Every node runs ``python -m visioncompress.train.cluster_worker SPEC`` (``cluster_worker``): it downloads the
inputs (the KFP artifacts' object-storage URIs), runs the training entry under torchrun, and node 0 uploads the
outputs under ``<output URI>.job/``. Job pods take the project image of their pool (``VC_IMAGE_GPU`` under
``TRAIN_ON_GPU``, else ``VC_IMAGE_CPU``), the pool's node selector / toleration, and the storage credentials
from the same Kubernetes secret as the storage steps (``VC_S3_SECRET``).

The job objects are built with the SDKs' own model classes (``kubeflow`` 0.5: ``kubeflow_trainer_api``;
``kubeflow-training`` 1.9: its PyTorchJob builders); the Kubernetes calls go through the ``kubernetes`` client.
Nothing here imports KFP; the SDKs are imported only when a multi-node job is asked for.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from visioncompress.errors import ConfigError, VisionCompressError
from visioncompress.settings import Settings, load_settings

WORKER_MODULE = "visioncompress.train.cluster_worker"
IN_JOB_ENV = "VC_IN_TRAIN_JOB"  # set in the job's pods: the training entry there never submits another job
STAGING_SUFFIX = ".job"
PATCH_MANAGER = "visioncompress.io/training-step"
NODE_CONTAINER = {"trainjob": "node", "pytorchjob": "pytorch"}
FAILURE_PREFIX = "visioncompress: "


class TrainJobFailed(VisionCompressError):
    """The multi-node job ended Failed; the message is its worker's one-line error (or the controller's)."""


def wanted(params: Mapping[str, Any]) -> bool:
    """Whether a training stage with these parameters runs as a multi-node job (not inside one already)."""
    return int(params.get("NUM_NODES") or 1) > 1 and not os.environ.get(IN_JOB_ENV)


@dataclass(frozen=True)
class JobRequest:
    """What one multi-node training job runs; everything the job objects are built from."""

    kind: str  # trainjob | pytorchjob
    name: str
    namespace: str
    stage: str
    params: dict
    inputs: dict  # artifact -> object-storage URI
    outputs: dict  # artifact -> object-storage prefix rank 0 uploads to
    num_nodes: int
    procs_per_node: int
    gpu: bool
    image: str
    timeout_s: int
    runtime: str = "torch-distributed"  # TrainJob: the ClusterTrainingRuntime
    env: list = field(default_factory=list)  # Kubernetes EnvVar dicts
    node_selector: dict = field(default_factory=dict)
    tolerations: list = field(default_factory=list)
    requests: dict = field(default_factory=dict)
    limits: dict = field(default_factory=dict)
    checkpoints: str = ""  # where every rank resumes from (CHECKPOINT_URI, else beside the output in storage)

    def worker_spec(self) -> dict:
        """The JSON each node's ``cluster_worker`` reads (URIs; the worker makes them local paths)."""
        return {"stage": self.stage, "params": self.params, "inputs": self.inputs, "outputs": self.outputs,
                "checkpoints": self.checkpoints, "num_nodes": self.num_nodes, "procs_per_node": self.procs_per_node}

    def command(self) -> list[str]:
        return ["python", "-m", WORKER_MODULE]

    def args(self) -> list[str]:
        return [json.dumps(self.worker_spec(), sort_keys=True, separators=(",", ":"))]


def job_name(stage: str, output_uri: str) -> str:
    """A DNS-1123 name, the same for every retry of one task (its output URI is fixed per task)."""
    digest = hashlib.sha256(output_uri.encode()).hexdigest()[:10]
    return f"vc-{stage.replace('_', '-')[:24]}-{digest}"


def staging_uri(output_uri: str) -> str:
    return output_uri.rstrip("/") + STAGING_SUFFIX


def _storage_env(env: Mapping[str, str]) -> list[dict]:
    from visioncompress.storage.s3 import STORAGE_SETTINGS, load_secret_mapping

    secret, keys = load_secret_mapping(env)
    out = [{"name": IN_JOB_ENV, "value": "1"}, {"name": "PYTHONUNBUFFERED", "value": "1"}]
    out += [{"name": n, "value": env[n].strip()} for n in STORAGE_SETTINGS if env.get(n, "").strip()]
    out += [{"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}} for key, var in keys.items()]
    return out


def make_request(stage_name: str, artifacts: Mapping[str, Any], params: Mapping[str, Any], *,
                 settings: Settings | None = None, namespace: str | None = None,
                 env: Mapping[str, str] | None = None) -> JobRequest:
    """The job for stage ``stage_name`` given its component's artifacts (``.uri``) and parameters."""
    from visioncompress.stages import STAGES
    from visioncompress.storage.s3 import is_remote

    settings = settings or load_settings()
    env = os.environ if env is None else env
    stage = STAGES[stage_name]
    num_nodes, per_node = int(params.get("NUM_NODES") or 1), int(params.get("GPUS_PER_NODE") or 1)
    if num_nodes < 2:
        raise ConfigError("NUM_NODES", num_nodes, "at least 2 for a multi-node job")
    if per_node < 1:
        raise ConfigError("GPUS_PER_NODE", per_node, "at least 1")
    gpu = str(params.get("TRAIN_ON_GPU", False)).lower() in ("true", "1")
    inputs, outputs = {}, {}
    names = [n for n, _ in (*stage.inputs, *stage.optional_inputs)]
    for name in names:
        artifact = artifacts.get(name)
        if artifact is None:
            continue
        uri = str(getattr(artifact, "uri", "") or "")
        if not is_remote(uri):
            raise ConfigError("NUM_NODES", num_nodes, f"1 here: a multi-node job reads its inputs from object "
                              f"storage (a Kubeflow pipeline root on s3:// or minio://), and input {name!r} is "
                              f"at {uri or 'a local path'}")
        inputs[name] = uri
    for name, kind in stage.outputs:
        if kind == "Metrics":
            continue  # the step logs the job's metrics itself, from the model's metadata
        uri = str(getattr(artifacts[name], "uri", "") or "")
        if not is_remote(uri):
            raise ConfigError("NUM_NODES", num_nodes, f"1 here: output {name!r} is at {uri or 'a local path'}, "
                              "not in object storage")
        outputs[name] = staging_uri(uri)
    first_output = next(iter(outputs.values()))
    key, value = settings.gpu_node_selector if gpu else settings.cpu_node_selector
    tolerations = []
    if gpu:
        tol = settings.gpu_toleration
        tolerations.append({k: v for k, v in {"key": tol.key, "operator": tol.operator, "value": tol.value or None,
                                              "effect": tol.effect}.items() if v})
    requests = {"cpu": settings.cpu_request, "memory": settings.memory_request}
    limits = {"cpu": settings.cpu_limit, "memory": settings.memory_limit}
    if gpu:
        requests[settings.gpu_accelerator] = limits[settings.gpu_accelerator] = str(per_node)
    plain = {k: v for k, v in params.items() if not k.startswith("_")}
    from visioncompress.train.launch import checkpoint_location

    first_name = next(name for name, kind in stage.outputs if kind != "Metrics")
    checkpoints = checkpoint_location(str(params.get("CHECKPOINT_URI") or ""), artifacts[first_name], stage_name)
    return JobRequest(
        kind=settings.train_job_kind, name=job_name(stage_name, first_output),
        namespace=namespace or settings.train_namespace or _own_namespace(), stage=stage_name, params=plain,
        inputs=inputs, outputs=outputs, num_nodes=num_nodes, procs_per_node=per_node, gpu=gpu,
        image=settings.image_gpu if gpu else settings.image_cpu, timeout_s=settings.timeouts["train"],
        runtime=settings.train_runtime,
        env=_storage_env(env), node_selector={key: value}, tolerations=tolerations, requests=requests,
        limits=limits, checkpoints=checkpoints)


def _own_namespace() -> str:
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return "default"


# ---- the job objects, from the SDKs' own models -------------------------------------------------------------

def trainjob(request: JobRequest):
    """A Kubeflow Trainer v2 ``TrainJob`` (``kubeflow_trainer_api`` model) for ``request``."""
    from kubeflow.trainer.constants import constants as c
    from kubeflow_trainer_api import models as m

    node_pod = {"nodeSelector": request.node_selector}
    if request.tolerations:
        node_pod["tolerations"] = request.tolerations
    patch = {"manager": PATCH_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [
        {"name": c.NODE, "template": {"spec": {"template": {"spec": node_pod}}}}]}}}}
    trainer = m.TrainerV1alpha1Trainer(
        image=request.image, command=request.command(), args=request.args(),
        env=[m.IoK8sApiCoreV1EnvVar.from_dict(e) for e in request.env],
        numNodes=request.num_nodes, numProcPerNode=request.procs_per_node,
        resourcesPerNode=m.IoK8sApiCoreV1ResourceRequirements.from_dict(
            {"requests": request.requests, "limits": request.limits}))
    return m.TrainerV1alpha1TrainJob(
        apiVersion=c.API_VERSION, kind=c.TRAINJOB_KIND,
        metadata=m.IoK8sApimachineryPkgApisMetaV1ObjectMeta(
            name=request.name, namespace=request.namespace,
            labels={"app.kubernetes.io/managed-by": "visioncompress", "visioncompress.io/stage": request.stage}),
        spec=m.TrainerV1alpha1TrainJobSpec(
            runtimeRef=m.TrainerV1alpha1RuntimeRef(name=request.runtime, kind="ClusterTrainingRuntime",
                                                   apiGroup=c.GROUP),
            trainer=trainer, runtimePatches=[m.TrainerV1alpha1RuntimePatch.from_dict(patch)],
            activeDeadlineSeconds=request.timeout_s))


def pytorchjob(request: JobRequest):
    """A Training Operator ``PyTorchJob`` (``kubeflow-training`` model, built with its own helpers)."""
    from kubeflow.training import models as m
    from kubeflow.training.constants import constants as c
    from kubeflow.training.utils import utils

    container = utils.get_container_spec(
        name=c.PYTORCHJOB_CONTAINER, base_image=request.image, command=request.command(), args=request.args(),
        resources=m.V1ResourceRequirements(requests=request.requests, limits=request.limits),
        env_vars=[_v1_env(m, e) for e in request.env])
    pod = utils.get_pod_template_spec(containers=[container])
    pod.spec.node_selector = request.node_selector
    pod.spec.tolerations = [m.V1Toleration(**t) for t in request.tolerations] or None
    job = utils.get_pytorchjob_template(
        name=request.name, namespace=request.namespace, num_workers=request.num_nodes, worker_pod_template_spec=pod,
        labels={"app.kubernetes.io/managed-by": "visioncompress", "visioncompress.io/stage": request.stage})
    for replica in job.spec.pytorch_replica_specs.values():
        replica.restart_policy = "Never"  # a failed rank fails the job; KFP's step retry starts it anew
    job.spec.run_policy = m.KubeflowOrgV1RunPolicy(clean_pod_policy="None", backoff_limit=0,
                                                   active_deadline_seconds=request.timeout_s)
    return job


def _v1_env(m, e: dict):
    if "valueFrom" in e:
        ref = e["valueFrom"]["secretKeyRef"]
        return m.V1EnvVar(name=e["name"], value_from=m.V1EnvVarSource(
            secret_key_ref=m.V1SecretKeySelector(name=ref["name"], key=ref["key"])))
    return m.V1EnvVar(name=e["name"], value=e["value"])


def manifest(request: JobRequest) -> dict:
    """The job as the dict sent to the Kubernetes API."""
    if request.kind == "trainjob":
        return trainjob(request).to_dict()
    from kubeflow.training.api_client import ApiClient

    return ApiClient().sanitize_for_serialization(pytorchjob(request))


# ---- status ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JobState:
    phase: str  # Pending, Running, Succeeded, Failed, Suspended
    message: str = ""

    @property
    def done(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


def job_state(kind: str, obj: Mapping[str, Any]) -> JobState:
    """The phase of a job object as the API returns it, read through the SDK's model of that kind."""
    if kind == "trainjob":
        from kubeflow_trainer_api import models as m

        job = m.TrainerV1alpha1TrainJob.from_dict(dict(obj))
        status = job.status
        conditions = {c.type: c for c in (status.conditions or [])} if status else {}
        for kind_name, phase in (("Failed", "Failed"), ("Complete", "Succeeded"), ("Suspended", "Suspended")):
            cond = conditions.get(kind_name)
            if cond is not None and cond.status == "True":
                return JobState(phase, _reason(cond.reason, cond.message))
        jobs = (status.jobs_status or []) if status else []
        if any((j.active or 0) + (j.ready or 0) > 0 for j in jobs):
            return JobState("Running")
        return JobState("Pending")
    from kubeflow.training import models as m
    from kubeflow.training.api_client import ApiClient
    from kubeflow.training.utils import utils

    job = ApiClient().deserialize(utils.FakeResponse(dict(obj)), m.KubeflowOrgV1PyTorchJob)
    conditions = (job.status.conditions or []) if job.status else []
    true = [c for c in conditions if c.status == "True"]
    for kind_name, phase in (("Failed", "Failed"), ("Succeeded", "Succeeded"), ("Suspended", "Suspended"),
                             ("Running", "Running"), ("Restarting", "Running")):
        for cond in true:
            if cond.type == kind_name:
                return JobState(phase, _reason(cond.reason, cond.message))
    return JobState("Pending")


def _reason(reason: str | None, message: str | None) -> str:
    return ": ".join(x for x in (reason, " ".join((message or "").split())) if x)


def failure_message(state: JobState, log_tail: Iterable[str]) -> str:
    """The worker's own one-line error (``visioncompress: <stage>: ...``) when its log has one."""
    lines = [line.strip() for line in log_tail if line.strip().startswith(FAILURE_PREFIX)]
    if lines:
        return lines[-1][len(FAILURE_PREFIX):]
    return state.message or "the job failed without a message"


def pod_selector(kind: str, name: str) -> str:
    """Node 0's pod (the one whose log is streamed)."""
    if kind == "trainjob":
        from kubeflow.trainer.constants import constants as c

        return f"{c.JOBSET_NAME_LABEL}={name},{c.JOBSET_RJOB_NAME_LABEL}={c.NODE},{c.JOB_INDEX_LABEL}=0"
    from kubeflow.training.constants import constants as c

    return (f"{c.JOB_NAME_LABEL}={name},{c.REPLICA_TYPE_LABEL}={c.REPLICA_TYPE_MASTER.lower()},"
            f"{c.REPLICA_INDEX_LABEL}=0")


# ---- the step: submit, watch, collect -------------------------------------------------------------------

def _api_coordinates(kind: str) -> tuple[str, str, str]:
    if kind == "trainjob":
        from kubeflow.trainer.constants import constants as c

        return c.GROUP, c.VERSION, c.TRAINJOB_PLURAL
    from kubeflow.training.constants import constants as c

    return c.GROUP, c.VERSION, c.PYTORCHJOB_PLURAL


def _kube_clients():
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi(), client.CoreV1Api()


def submit(request: JobRequest, custom_api, *, say: Callable[[str], None] = print) -> None:
    """Create the job; attach to a running one of the same name (a retried step); replace a failed one."""
    from kubernetes.client.exceptions import ApiException

    group, version, plural = _api_coordinates(request.kind)
    body = manifest(request)
    for attempt in range(2):
        try:
            custom_api.create_namespaced_custom_object(group, version, request.namespace, plural, body)
            say(f"{request.kind} {request.namespace}/{request.name}: created ({request.num_nodes} nodes x "
                f"{request.procs_per_node} processes, {'GPU' if request.gpu else 'CPU'}, image {request.image})")
            return
        except ApiException as exc:
            if exc.status == 409 and attempt == 0:
                existing = custom_api.get_namespaced_custom_object(group, version, request.namespace, plural,
                                                                   request.name)
                if job_state(request.kind, existing).phase != "Failed":
                    say(f"{request.kind} {request.namespace}/{request.name}: exists, attaching to it")
                    return
                say(f"{request.kind} {request.namespace}/{request.name}: a failed earlier try, replacing it")
                custom_api.delete_namespaced_custom_object(group, version, request.namespace, plural, request.name)
                for _ in range(60):  # until the controller has removed it (finalizers)
                    try:
                        custom_api.get_namespaced_custom_object(group, version, request.namespace, plural,
                                                                request.name)
                    except ApiException as gone:
                        if gone.status == 404:
                            break
                        raise
                    time.sleep(2)
                continue
            raise _api_error(request, exc) from None


def _api_error(request: JobRequest, exc) -> VisionCompressError:
    what = {403: "the pipeline's service account may not create it (grant create/get/list/watch/delete on "
                 f"{_api_coordinates(request.kind)[2]} and get/list on pods and pods/log in {request.namespace})",
            404: f"the cluster has no {request.kind} API (install "
                 + ("Kubeflow Trainer v2 and its torch-distributed runtime" if request.kind == "trainjob"
                    else "the Kubeflow Training Operator") + ", or set VC_TRAIN_JOB_KIND)"}
    reason = what.get(exc.status, f"HTTP {exc.status} {exc.reason}")
    return ConfigError("NUM_NODES", request.num_nodes, f"1, or a cluster that runs the multi-node job: {reason}")


def watch(request: JobRequest, custom_api, core_api, *, poll_s: float = 10.0,
          say: Callable[[str], None] = print) -> JobState:
    """Print status changes and node 0's log until the job ends; raise ``TrainJobFailed`` when it failed."""
    group, version, plural = _api_coordinates(request.kind)
    tail: collections.deque[str] = collections.deque(maxlen=200)
    streamed: set[str] = set()
    last = None
    while True:
        obj = custom_api.get_namespaced_custom_object(group, version, request.namespace, plural, request.name)
        state = job_state(request.kind, obj)
        if state != last:
            say(f"{request.kind} {request.name}: {state.phase}" + (f" ({state.message})" if state.message else ""))
            last = state
        pods = core_api.list_namespaced_pod(request.namespace,
                                            label_selector=pod_selector(request.kind, request.name)).items
        for pod in pods:
            if pod.metadata.uid in streamed or pod.status.phase not in ("Running", "Succeeded", "Failed"):
                continue
            streamed.add(pod.metadata.uid)
            stream = core_api.read_namespaced_pod_log(pod.metadata.name, request.namespace,
                                                      container=NODE_CONTAINER[request.kind], follow=True,
                                                      _preload_content=False)
            for line in _lines(raw.decode("utf-8", "replace") for raw in stream.stream()):
                tail.append(line)
                say(f"[node 0] {line}")
        if state.done:
            break
        time.sleep(poll_s)
    if state.phase == "Failed":
        raise TrainJobFailed(f"{request.kind} {request.namespace}/{request.name} failed: "
                             f"{failure_message(state, tail)}")
    return state


def _lines(chunks: Iterable[str]) -> Iterable[str]:
    """Whole lines from a stream of text chunks (a chunk may end inside a line)."""
    pending = ""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split("\n")
        yield from complete
    if pending:
        yield pending


def collect(request: JobRequest, artifacts: Mapping[str, Any]) -> None:
    """Download what rank 0 uploaded into each output artifact's local path, then drop the staged copy."""
    import shutil
    import tempfile
    from pathlib import Path

    from visioncompress.artifacts import staged_output
    from visioncompress.storage.s3 import delete_keys, download, list_keys, parse_uri

    for name, uri in request.outputs.items():
        final = Path(artifacts[name].path)
        with tempfile.TemporaryDirectory(prefix="vc-job-") as tmp:
            fetched = download(uri.rstrip("/") + "/", tmp)
            with staged_output(final) as out:
                shutil.copytree(fetched, out, dirs_exist_ok=True)
        target = parse_uri(uri)
        keys = list_keys(uri.rstrip("/") + "/")
        if keys:
            delete_keys(f"{target.scheme}://{target.bucket}", keys)


def describe_outputs(artifacts: Mapping[str, Any], request: JobRequest) -> None:
    """The KFP metadata and metrics a single-node run would have logged, from the models' own metadata."""
    from visioncompress.artifacts import read_model_metadata
    from visioncompress.kfp_io import describe_model, log_training

    for name in request.outputs:
        metadata = read_model_metadata(artifacts[name].path)
        describe_model(artifacts[name], metadata)
        if artifacts.get("metrics") is not None:
            log_training(artifacts["metrics"], metadata.metrics)


def run_if_multi_node(stage_name: str, artifacts: Mapping[str, Any], params: Mapping[str, Any], *,
                      poll_s: float = 10.0) -> bool:
    """Run the stage as a multi-node job when ``NUM_NODES`` > 1 (True), else leave it to the caller (False)."""
    if not wanted(params):
        return False
    request = make_request(stage_name, artifacts, params)
    custom_api, core_api = _kube_clients()
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    submit(request, custom_api, say=say)
    watch(request, custom_api, core_api, poll_s=poll_s, say=say)
    collect(request, artifacts)
    describe_outputs(artifacts, request)
    return True
