"""Deployment settings read from the environment (with defaults), never buried in code.

They are read when pipelines are compiled, so a platform team sets them once in its build:
    VC_IMAGE_CPU, VC_IMAGE_GPU, VC_CPU_NODE_SELECTOR ("key=value"), VC_GPU_NODE_SELECTOR,
    VC_GPU_ACCELERATOR, VC_GPU_LIMIT, VC_GPU_TOLERATION ("key=value:Effect"),
    VC_CPU_REQUEST, VC_MEMORY_REQUEST, VC_CPU_LIMIT, VC_MEMORY_LIMIT.
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
    value: str
    effect: str


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


def load_settings() -> Settings:
    toleration_text = _env("VC_GPU_TOLERATION", "nvidia.com/gpu=present:NoSchedule")
    key_value, _, effect = toleration_text.partition(":")
    tol_key, tol_value = _key_value(key_value, "VC_GPU_TOLERATION")
    return Settings(
        image_cpu=_env("VC_IMAGE_CPU", "ghcr.io/visioncompress/visioncompress-cpu:0.1.0"),
        image_gpu=_env("VC_IMAGE_GPU", "ghcr.io/visioncompress/visioncompress-gpu:0.1.0"),
        cpu_node_selector=_key_value(
            _env("VC_CPU_NODE_SELECTOR", "visioncompress.io/pool=cpu"), "VC_CPU_NODE_SELECTOR"
        ),
        gpu_node_selector=_key_value(
            _env("VC_GPU_NODE_SELECTOR", "visioncompress.io/pool=gpu"), "VC_GPU_NODE_SELECTOR"
        ),
        gpu_accelerator=_env("VC_GPU_ACCELERATOR", "nvidia.com/gpu"),
        gpu_limit=int(_env("VC_GPU_LIMIT", "1")),
        gpu_toleration=Toleration(tol_key, tol_value, effect or "NoSchedule"),
        cpu_request=_env("VC_CPU_REQUEST", "2"),
        memory_request=_env("VC_MEMORY_REQUEST", "4G"),
        cpu_limit=_env("VC_CPU_LIMIT", "4"),
        memory_limit=_env("VC_MEMORY_LIMIT", "16G"),
    )
