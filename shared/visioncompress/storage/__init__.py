"""Object storage (s3:// and minio:// through the minio client) and publishing results to it."""

from visioncompress.storage.publish import pointer_decision, publications, publish, resolve_run_date
from visioncompress.storage.s3 import (
    CredentialsError, MissingBucketError, MissingObjectError, ObjectURI, Storage, StorageError, StorageSettings,
    UnreachableError, download, get_json, is_remote, load_secret_mapping, load_storage_settings, localized,
    make_client, parse_uri, put_json, sha256_file, upload_dir, upload_file,
)

__all__ = [
    "CredentialsError", "MissingBucketError", "MissingObjectError", "ObjectURI", "Storage", "StorageError",
    "StorageSettings", "UnreachableError", "download", "get_json", "is_remote", "load_secret_mapping",
    "load_storage_settings", "localized", "make_client", "parse_uri", "pointer_decision", "publications", "publish",
    "put_json", "resolve_run_date", "sha256_file", "upload_dir", "upload_file",
]
