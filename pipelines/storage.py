"""Object-storage access for a task that reads or writes s3:// or minio:// paths.

Credentials reach a task only through a Kubernetes secret mapped to environment variables
(``VC_S3_SECRET``, default ``visioncompress-s3``; key mapping ``VC_S3_SECRET_KEYS``). Endpoint, TLS and
region are run parameters (``S3_ENDPOINT``, ``S3_SECURE``, ``S3_REGION``); the compile-time settings
below are copied onto the task as their fallback.
"""

from __future__ import annotations

import os

from kfp import kubernetes

from visioncompress.storage.s3 import load_secret_mapping

# Runtime storage settings a task needs; copied from the compiling environment when set there.
STORAGE_SETTINGS = ("VC_S3_ENDPOINT", "VC_S3_SECURE", "VC_S3_REGION", "VC_S3_CA_BUNDLE", "VC_S3_CERT_CHECK",
                    "VC_S3_RETRIES", "VC_S3_TIMEOUT")


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
