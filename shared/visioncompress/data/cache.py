"""Where a dataset's image files are read from: a local folder as it is, an archive or an object-store
URI unpacked/downloaded once into the pod's cache folder and reused by every later stage in that pod.

The cache folder is ``$VC_CACHE_DIR`` (point it at a mounted volume to share it between pods), else
``$XDG_CACHE_HOME/visioncompress`` or ``~/.cache/visioncompress``. An entry is keyed by the source URI and
a fingerprint of its content (object ETags for ``s3://``/``minio://``, size + mtime for a local archive),
so a changed source is fetched anew; entries are written to a temporary sibling and renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from visioncompress.errors import ArtifactError
from visioncompress.storage.s3 import is_remote

CACHE_ENV = "VC_CACHE_DIR"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "visioncompress"


def remote_fingerprint(uri: str) -> str:
    """sha256 over (key, ETag) of the object ``uri`` names or of every object under that prefix."""
    from visioncompress.storage.s3 import StorageError, _storage, _translated, parse_uri

    target = parse_uri(uri, "DATASET_PATH")
    try:
        storage = _storage(target, None)
        with _translated(storage, target, "list"):
            objects = [(o.object_name, o.etag or "") for o in
                       storage.client.list_objects(target.bucket, prefix=target.key, recursive=True)
                       if not o.is_dir and not o.object_name.endswith("/")]
    except StorageError as exc:
        raise type(exc)(f"DATASET_PATH={uri!r}: {exc}") from exc
    digest = hashlib.sha256(uri.encode())
    for name, etag in sorted(objects):
        digest.update(f"\0{name}\0{etag}".encode())
    return digest.hexdigest()


def source_fingerprint(path: str) -> str:
    """What identifies this source's content: ETags remotely, size + mtime for a local file, "" for a folder."""
    if is_remote(path):
        return remote_fingerprint(path)
    local = Path(path)
    if local.is_file():
        stat = local.stat()
        return hashlib.sha256(f"{local.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()
    return ""


def local_root(path: str, fingerprint: str | None = None) -> Path:
    """A local folder holding the source ``path`` (a folder, archive, or remote prefix/object).

    ``fingerprint`` is the one recorded when the dataset was prepared: a source whose content changed
    since then is refused (its file lists and labels would no longer match).
    """
    from visioncompress.data.sources import _unpack_if_archive

    local = Path(path)
    if not is_remote(path) and local.is_dir():
        return local
    if not is_remote(path) and not local.exists():
        raise ArtifactError(f"DATASET_PATH={path!r}: the dataset's source is not reachable from here (it was "
                            "prepared from this path; on a cluster use an s3:// / minio:// URI or a mounted volume)")
    current = source_fingerprint(path)
    if fingerprint and current != fingerprint:
        raise ArtifactError(f"DATASET_PATH={path!r} changed after the dataset was prepared (its content "
                            "fingerprint differs); prepare the dataset again")
    entry = cache_dir() / current[:32]
    done = entry / ".complete"
    if not done.is_file():
        entry.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{entry.name}.partial-", dir=entry.parent))
        try:
            if is_remote(path):
                from visioncompress.storage.s3 import StorageError, download

                try:
                    fetched = download(path, scratch / "fetched")
                except StorageError as exc:
                    raise type(exc)(f"DATASET_PATH={path!r}: {exc}") from exc
            else:
                fetched = local
            root = _unpack_if_archive(fetched, scratch)
            (scratch / ".root").write_text(root.relative_to(scratch).as_posix())
            (scratch / ".complete").write_text(path + "\n")
            try:
                os.replace(scratch, entry)
            except OSError:
                if not done.is_file():
                    raise
                shutil.rmtree(scratch, ignore_errors=True)  # another process of this pod finished first
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
    return entry / (entry / ".root").read_text()
