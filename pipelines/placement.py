"""Where and how each task runs in a cluster: pool, resources, timeout, retries, caching.

Applied by pipelines (``apply_policy`` from ``_steps.step``), never by components. Everything comes from
``visioncompress.settings`` (environment variables read at compile time) and the stage's kind
(``visioncompress.stages``). Local runs ignore the Kubernetes parts.

- Pool: GPU stages on the GPU pool (accelerator type/limit, node selector, toleration), the rest on CPU.
  Training stages go to the GPU pool only under ``TRAIN_ON_GPU`` (a run parameter): ``_steps.step`` builds
  them twice, under ``dsl.If``/``dsl.Else``, and calls ``apply_policy(..., gpu=...)`` for each.
- Timeout: every step, per kind (``VC_TIMEOUT_<KIND>``).
- Retries with exponential back-off: the steps that touch the network (data preparation, model and
  teacher loading from object storage, publish) or a GPU.
- Caching: data preparation and compression steps are cached on identical inputs; benchmark, report
  and publish never (a scheduled run must measure and publish anew).
"""

from __future__ import annotations

from kfp import kubernetes

from visioncompress.settings import Settings, load_settings

UNCACHED_KINDS = ("measure", "report", "publish")
RETRY_BACKOFF = dict(backoff_duration="30s", backoff_factor=2.0, backoff_max_duration="600s")


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
    kubernetes.add_toleration(task, key=tol.key, operator=tol.operator, value=tol.value or None, effect=tol.effect)
    task.set_accelerator_type(settings.gpu_accelerator).set_accelerator_limit(settings.gpu_limit)
    task.set_cpu_request(settings.cpu_request).set_memory_request(settings.memory_request)
    return task


def with_job_settings(task):
    """Copy the settings a multi-node training step builds its job from (images, pools, job kind) onto ``task``,
    those set in the compiling environment (unset, the step's defaults are the same)."""
    import os

    from visioncompress.settings import JOB_SETTINGS

    for name in JOB_SETTINGS:
        value = os.environ.get(name, "").strip()
        if value:
            task.set_env_variable(name, value)
    return task


def apply_policy(task, stage, settings: Settings | None = None, *, gpu: bool | None = None, gpus=None,
                 submitter: bool = False):
    """Pool, resources, timeout, retries and caching of ``task``, a task of ``stage``.

    ``gpu`` overrides the stage's own pool (the GPU branch of a training stage under ``TRAIN_ON_GPU``), with
    ``gpus`` accelerators (a number or a run parameter) instead of ``VC_GPU_LIMIT``. ``submitter``: the task
    only submits and watches a multi-node job (small CPU-pool resources).
    """
    from visioncompress.config import StorageConfig

    settings = settings or load_settings()
    on_gpu_pool = stage.image == "gpu" if gpu is None else gpu
    if on_gpu_pool:
        on_gpu(task, settings)
        if gpus is not None:
            task.set_accelerator_limit(gpus)
    elif submitter or stage.kind in ("report", "publish"):
        on_cpu(task, settings, cpu="500m", memory="1G")
    else:
        on_cpu(task, settings)
    kubernetes.set_timeout(task, settings.timeouts[stage.kind])
    uses_storage = any(cls is StorageConfig for cls, _ in stage.config_uses())
    if (uses_storage or on_gpu_pool or submitter) and settings.retries > 0:
        task.set_retry(num_retries=settings.retries, **RETRY_BACKOFF)
    task.set_caching_options(stage.kind not in UNCACHED_KINDS)
    if stage.kind == "train":
        with_job_settings(task)
    if uses_storage or submitter:
        from visioncompress.pipelines.storage import with_storage_access

        # Inputs are usually local: only publish and a multi-node job's submitter need the secret to exist.
        with_storage_access(task, optional=not (stage.kind == "publish" or submitter))
    return task
