"""Where tasks run in a cluster: CPU pool or GPU pool. Applied by pipelines, never by components.

Label keys/values, tolerations and resource sizes come from ``visioncompress.settings``
(environment variables read at compile time). Local runs ignore all of it.
"""

from __future__ import annotations

from kfp import kubernetes

from visioncompress.settings import Settings, load_settings


def on_cpu(task, settings: Settings | None = None, *, cpu: str | None = None, memory: str | None = None):
    settings = settings or load_settings()
    key, value = settings.cpu_node_selector
    kubernetes.add_node_selector(task, label_key=key, label_value=value)
    task.set_cpu_request(cpu or settings.cpu_request).set_cpu_limit(settings.cpu_limit)
    task.set_memory_request(memory or settings.memory_request).set_memory_limit(settings.memory_limit)
    return task


def on_gpu(task, settings: Settings | None = None):
    settings = settings or load_settings()
    key, value = settings.gpu_node_selector
    kubernetes.add_node_selector(task, label_key=key, label_value=value)
    tol = settings.gpu_toleration
    kubernetes.add_toleration(task, key=tol.key, operator="Equal", value=tol.value, effect=tol.effect)
    task.set_accelerator_type(settings.gpu_accelerator).set_accelerator_limit(settings.gpu_limit)
    task.set_cpu_request(settings.cpu_request).set_memory_request(settings.memory_request)
    return task
