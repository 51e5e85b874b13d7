"""The publish step, and object-storage access for any task that reads s3:// or minio:// inputs.

Credentials reach a task only through a Kubernetes secret mapped to environment variables
(``VC_S3_SECRET``, default ``visioncompress-s3``; key mapping ``VC_S3_SECRET_KEYS``); endpoint, TLS and
region are settings copied onto the task when the pipeline is compiled. Pipelines call::

    add_publish(report_task, {"torch_ptq": quantized.outputs["quantized_model"]},
                destination=DESTINATION, accuracy_budget=ACCURACY_BUDGET, run_date=RUN_DATE)
"""

from __future__ import annotations

import os

from kfp import dsl, kubernetes

from components.publish.component import publish
from pipelines.placement import on_cpu
from visioncompress.storage.s3 import load_secret_mapping

# Runtime storage settings a task needs; copied from the compiling environment when set there.
STORAGE_SETTINGS = ("VC_S3_ENDPOINT", "VC_S3_SECURE", "VC_S3_REGION", "VC_S3_CA_BUNDLE", "VC_S3_CERT_CHECK",
                    "VC_S3_RETRIES", "VC_S3_TIMEOUT")
PUBLISHABLE = ("torch_ptq", "onnx_ptq", "openvino_ptq", "tensorrt_ptq", "torch_qat", "openvino_qat", "distilled",
               "pruned")


def with_storage_access(task, *, optional: bool = False):
    """Map the storage secret to env vars and copy the storage settings onto ``task``.

    ``optional=True`` lets the pod start without the secret (tasks whose inputs are usually local).
    """
    secret_name, secret_keys = load_secret_mapping()
    kubernetes.use_secret_as_env(task, secret_name=secret_name, secret_key_to_env=secret_keys, optional=optional)
    for name in STORAGE_SETTINGS:
        value = os.environ.get(name, "").strip()
        if value:
            task.set_env_variable(name, value)
    return task


def add_publish(report_task, models: dict, *, destination, accuracy_budget=1.0, run_date="", primary="",
                publish_over_budget=False, keep_last=0):
    """A publish task fed by ``report_task``'s report/results and ``models`` (name -> Model output).

    With a pipeline-parameter ``destination`` the step runs only when it is not empty. Publishing is a
    side effect, so it is never served from the cache.
    """
    unknown = sorted(set(models) - set(PUBLISHABLE))
    if unknown:
        raise ValueError(f"add_publish: unknown model input(s) {unknown}; publish takes {list(PUBLISHABLE)}")
    options = dict(DESTINATION=destination, ACCURACY_BUDGET=accuracy_budget, RUN_DATE=run_date, PRIMARY=primary,
                   PUBLISH_OVER_BUDGET=publish_over_budget, KEEP_LAST=keep_last)
    if isinstance(destination, str):
        return _publish_task(report_task, models, options) if destination else None
    with dsl.If(destination != "", name="publish-requested"):
        return _publish_task(report_task, models, options)


def _publish_task(report_task, models, options):
    # The run id names the publication's prefix, so two runs on one date never share it.
    task = publish(report=report_task.outputs["report"], results=report_task.outputs["results"],
                   RUN_ID=dsl.PIPELINE_JOB_ID_PLACEHOLDER, **options, **models)
    task.set_display_name("publish").set_caching_options(False)
    on_cpu(task, cpu="500m", memory="1G")
    with_storage_access(task)
    return task
