"""Object-storage access for a task that reads or writes s3:// or minio:// paths.

Credentials reach a task only through a Kubernetes secret mapped to environment variables
(``VC_S3_SECRET``, default ``visioncompress-s3``; key mapping ``VC_S3_SECRET_KEYS``). Endpoint, TLS and
region are run parameters (``S3_ENDPOINT``, ``S3_SECURE``, ``S3_REGION``); the compile-time settings
below are copied onto the task as their fallback.
"""

from __future__ import annotations

import os

from kfp import kubernetes

from visioncompress.storage.s3 import STORAGE_SETTINGS, load_secret_mapping


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
