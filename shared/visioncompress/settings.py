"""Deployment settings read from the environment (with defaults), never buried in code.

They are read when pipelines are compiled, so a platform team sets them once in its build:
    VC_IMAGE_CPU, VC_IMAGE_GPU, VC_IMAGE_DETECTION (the detection pipelines' CPU steps), VC_CPU_NODE_SELECTOR ("key=value"), VC_GPU_NODE_SELECTOR,
    VC_GPU_ACCELERATOR, VC_GPU_LIMIT, VC_GPU_TOLERATION ("key:Effect" or "key=value:Effect"),
    VC_CPU_REQUEST, VC_MEMORY_REQUEST, VC_CPU_LIMIT, VC_MEMORY_LIMIT,
    VC_TIMEOUT_<KIND> (seconds; KIND one of DATA, TRAIN, COMPUTE, MEASURE, REPORT, PUBLISH, GPU),
    VC_RETRIES (retries of the steps that touch the network or a GPU),
    VC_TRAIN_JOB_KIND (trainjob: Kubeflow Trainer v2 TrainJob, default; pytorchjob: the Training Operator's
    PyTorchJob), VC_TRAIN_RUNTIME (the TrainJob's ClusterTrainingRuntime, default torch-distributed),
    VC_TRAIN_NAMESPACE (where multi-node jobs are created; default the pipeline step's own namespace).

The defaults run on any cluster: CPU steps select ``kubernetes.io/arch=amd64`` (a label every node has;
OpenVINO needs x86), GPU steps select ``nvidia.com/gpu.present=true`` (NVIDIA GPU Feature Discovery /
GPU Operator) and tolerate the ``nvidia.com/gpu`` taint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _key_value(text: str, name: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise ValueError(f"{name}={text!r} must look like 'label-key=label-value'")
    return key.strip(), value.strip()


@dataclass(frozen=True)
class Toleration:
    key: str
    value: str  # empty: tolerate the key with any value (operator Exists)
    effect: str

    @property
    def operator(self) -> str:
        return "Equal" if self.value else "Exists"


# Per-stage-kind step limits (seconds) and retries; see visioncompress.stages for each stage's kind.
STEP_KINDS = ("data", "train", "compute", "measure", "report", "publish", "gpu")
DEFAULT_TIMEOUTS = {"data": 2 * 3600, "train": 24 * 3600, "compute": 4 * 3600, "measure": 2 * 3600,
                    "report": 1800, "publish": 3600, "gpu": 4 * 3600}


@dataclass(frozen=True)
class Settings:
    image_cpu: str
    image_gpu: str
    cpu_node_selector: tuple[str, str]
    gpu_node_selector: tuple[str, str]
    gpu_accelerator: str
    gpu_limit: int
    gpu_toleration: Toleration
    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str
    timeouts: dict
    retries: int
    train_job_kind: str = "trainjob"
    train_runtime: str = "torch-distributed"
    train_namespace: str = ""
    # the detection pipelines' CPU steps: the CPU image plus the OpenMMLab stack (images/detection)
    image_detection: str = "ghcr.io/visioncompress/visioncompress-detection:0.1.0"


TRAIN_JOB_KINDS = ("trainjob", "pytorchjob")
# What a multi-node training step reads at run time to build its job: copied from the compiling environment
# onto the training tasks when set there (unset, the run time takes the same defaults).
JOB_SETTINGS = ("VC_IMAGE_CPU", "VC_IMAGE_GPU", "VC_CPU_NODE_SELECTOR", "VC_GPU_NODE_SELECTOR",
                "VC_GPU_ACCELERATOR", "VC_GPU_TOLERATION", "VC_CPU_REQUEST", "VC_MEMORY_REQUEST", "VC_CPU_LIMIT",
                "VC_MEMORY_LIMIT", "VC_TIMEOUT_TRAIN", "VC_TRAIN_JOB_KIND", "VC_TRAIN_RUNTIME", "VC_TRAIN_NAMESPACE",
                "VC_S3_SECRET", "VC_S3_SECRET_KEYS")


def load_settings() -> Settings:
    toleration_text = _env("VC_GPU_TOLERATION", "nvidia.com/gpu:NoSchedule")
    key_value, _, effect = toleration_text.partition(":")
    tol_key, _, tol_value = key_value.partition("=")
    if not tol_key.strip():
        raise ValueError(f"VC_GPU_TOLERATION={toleration_text!r} must look like 'key:Effect' or 'key=value:Effect'")
    timeouts = {}
    for kind, default in DEFAULT_TIMEOUTS.items():
        text = _env(f"VC_TIMEOUT_{kind.upper()}", str(default))
        if not text.isdigit() or int(text) <= 0:
            raise ValueError(f"VC_TIMEOUT_{kind.upper()}={text!r} must be a positive number of seconds")
        timeouts[kind] = int(text)
    job_kind = _env("VC_TRAIN_JOB_KIND", "trainjob").lower()
    if job_kind not in TRAIN_JOB_KINDS:
        raise ValueError(f"VC_TRAIN_JOB_KIND={job_kind!r} must be one of {', '.join(TRAIN_JOB_KINDS)}")
    return Settings(
        image_cpu=_env("VC_IMAGE_CPU", "ghcr.io/visioncompress/visioncompress-cpu:0.1.0"),
        image_gpu=_env("VC_IMAGE_GPU", "ghcr.io/visioncompress/visioncompress-gpu:0.1.0"),
        image_detection=_env("VC_IMAGE_DETECTION", "ghcr.io/visioncompress/visioncompress-detection:0.1.0"),
        cpu_node_selector=_key_value(
            _env("VC_CPU_NODE_SELECTOR", "kubernetes.io/arch=amd64"), "VC_CPU_NODE_SELECTOR"
        ),
        gpu_node_selector=_key_value(
            _env("VC_GPU_NODE_SELECTOR", "nvidia.com/gpu.present=true"), "VC_GPU_NODE_SELECTOR"
        ),
        gpu_accelerator=_env("VC_GPU_ACCELERATOR", "nvidia.com/gpu"),
        gpu_limit=int(_env("VC_GPU_LIMIT", "1")),
        gpu_toleration=Toleration(tol_key.strip(), tol_value.strip(), effect or "NoSchedule"),
        cpu_request=_env("VC_CPU_REQUEST", "2"),
        memory_request=_env("VC_MEMORY_REQUEST", "4G"),
        cpu_limit=_env("VC_CPU_LIMIT", "4"),
        memory_limit=_env("VC_MEMORY_LIMIT", "16G"),
        timeouts=timeouts,
        retries=int(_env("VC_RETRIES", "3")),
        train_job_kind=job_kind,
        train_runtime=_env("VC_TRAIN_RUNTIME", "torch-distributed"),
        train_namespace=_env("VC_TRAIN_NAMESPACE", ""),
    )
