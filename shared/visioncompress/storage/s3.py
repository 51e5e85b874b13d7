"""Object storage through the ``minio`` client: ``s3://bucket/key`` and ``minio://bucket/key`` URIs.

Settings are environment variables (a platform team sets them once; pipelines copy the ones that are
set onto the tasks that need storage when they are compiled):

    VC_S3_ENDPOINT    host[:port] or http(s)://host[:port]; default the in-cluster MinIO of a standard Kubeflow
                      install, minio-service.kubeflow:9000 (AWS: s3.amazonaws.com)
    VC_S3_SECURE      TLS on/off (default: off for the in-cluster MinIO, on otherwise; http:// turns it off)
    VC_S3_REGION      bucket region (default: asked from the server)
    VC_S3_CA_BUNDLE   CA certificate file for an endpoint with a private CA
    VC_S3_CERT_CHECK  verify the server certificate (default true)
    VC_S3_RETRIES     connection retries (default 3)
    VC_S3_TIMEOUT     connect timeout in seconds (default 10)
    VC_S3_SECRET      Kubernetes secret holding the credentials (compile time; default visioncompress-s3)
    VC_S3_SECRET_KEYS how that secret's keys map to variables, "key=VAR,key=VAR"
                      (default AWS_ACCESS_KEY_ID=AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY=AWS_SECRET_ACCESS_KEY)

Credentials come only from the environment (the secret mapped to variables), never from parameters:
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (optionally AWS_SESSION_TOKEN), or MINIO_ACCESS_KEY /
MINIO_SECRET_KEY. With none set, requests are anonymous (public buckets).

Every uploaded object carries its SHA-256 as user metadata (``x-amz-meta-sha256``); downloads
recompute it and refuse a file that does not match.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import mimetypes
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Mapping

from visioncompress.errors import ArtifactError, ConfigError

SCHEMES = ("s3", "minio")
SHA256_META = "sha256"
_SHA256_HEADER = "x-amz-meta-sha256"
_CHUNK = 1 << 20
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_NOT_FOUND = {"NoSuchKey", "ResourceNotFound", "NoSuchObject"}
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                     "InvalidClientTokenId", "AuthorizationHeaderMalformed", "InvalidSecurity"}
DEFAULT_SECRET = "visioncompress-s3"
# The settings a task that touches storage needs at run time (pipelines copy the ones set at compile time).
STORAGE_SETTINGS = ("VC_S3_ENDPOINT", "VC_S3_SECURE", "VC_S3_REGION", "VC_S3_CA_BUNDLE", "VC_S3_CERT_CHECK",
                    "VC_S3_RETRIES", "VC_S3_TIMEOUT")
DEFAULT_SECRET_KEYS = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}


class StorageError(ArtifactError):
    """Object storage refused or could not serve a request."""


class MissingBucketError(StorageError):
    """The bucket does not exist at the endpoint."""


class MissingObjectError(StorageError):
    """No object (and, for downloads, no prefix) by that name."""


class CredentialsError(StorageError):
    """The endpoint rejected the credentials or denied access."""


class UnreachableError(StorageError):
    """The endpoint could not be reached (network, DNS, TLS)."""


@dataclass(frozen=True)
class ObjectURI:
    scheme: str
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}"

    def child(self, *parts: str) -> "ObjectURI":
        """The URI of ``parts`` under this one, treated as a prefix."""
        base = self.key.rstrip("/")
        rest = "/".join(p.strip("/") for p in parts if p.strip("/"))
        return ObjectURI(self.scheme, self.bucket, f"{base}/{rest}" if base else rest)

    @property
    def prefix(self) -> str:
        """The key as a folder prefix ('' for the whole bucket)."""
        return self.key.rstrip("/") + "/" if self.key.strip("/") else ""


def is_remote(path: Any) -> bool:
    return isinstance(path, str) and path.strip().lower().startswith(tuple(f"{s}://" for s in SCHEMES))


def parse_uri(uri: str, parameter: str = "uri") -> ObjectURI:
    """Split ``s3://bucket/key`` / ``minio://bucket/key``; a malformed URI is a ConfigError naming ``parameter``."""
    text = str(uri).strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ConfigError(parameter, uri, "an s3://bucket/key or minio://bucket/key URI")
    bucket, _, key = rest.partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise ConfigError(parameter, uri, "a URI whose bucket name is 3-63 lowercase letters, digits, '.' or '-'")
    if any(part == ".." for part in key.split("/")):
        raise ConfigError(parameter, uri, "a URI without '..' path parts")
    return ObjectURI(scheme.lower(), bucket, key.lstrip("/"))


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = env.get(name, "").strip().lower()
    if not text:
        return default
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(name, env.get(name), "true or false")


def _positive(env: Mapping[str, str], name: str, default: float, kind=float):
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(name, text, f"a {'whole ' if kind is int else ''}number") from None
    if value < 0:
        raise ConfigError(name, text, "a number >= 0")
    return value


def parse_secret_keys(text: str) -> dict[str, str]:
    """``"accesskey=AWS_ACCESS_KEY_ID,secretkey=AWS_SECRET_ACCESS_KEY"`` -> {secret key: variable}."""
    if not text.strip():
        return dict(DEFAULT_SECRET_KEYS)
    mapping = {}
    for pair in text.split(","):
        key, sep, var = pair.partition("=")
        if not sep or not key.strip() or not var.strip():
            raise ConfigError("VC_S3_SECRET_KEYS", text, "pairs like 'accesskey=AWS_ACCESS_KEY_ID,secretkey=...'")
        mapping[key.strip()] = var.strip()
    return mapping


# KFP's own object store in a standard Kubeflow install (namespace kubeflow), plain HTTP inside the cluster.
DEFAULT_ENDPOINT = "minio-service.kubeflow:9000"


@dataclass(frozen=True)
class StorageSettings:
    endpoint: str
    secure: bool
    region: str | None
    ca_bundle: str | None
    cert_check: bool
    retries: int
    timeout: float
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    credential_source: str = "none (anonymous)"

    def url(self, scheme: str = "s3") -> str:
        return f"{'https' if self.secure else 'http'}://{self.endpoint_for(scheme) or '<unset>'}"

    def endpoint_for(self, scheme: str) -> str:
        return self.endpoint


def _credentials(env: Mapping[str, str]) -> tuple[str | None, str | None, str | None, str]:
    for access_var, secret_var in (("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
                                   ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY")):
        access, secret = env.get(access_var, "").strip(), env.get(secret_var, "").strip()
        if access or secret:
            if not (access and secret):
                missing = secret_var if access else access_var
                raise ConfigError(missing, "", f"set together with {access_var if access else secret_var} "
                                  "(both come from the storage secret)")
            token = env.get("AWS_SESSION_TOKEN", "").strip() if access_var.startswith("AWS") else ""
            return access, secret, token or None, f"{access_var}/{secret_var}"
    return None, None, None, "none (anonymous)"


def load_storage_settings(env: Mapping[str, str] | None = None) -> StorageSettings:
    env = os.environ if env is None else env
    endpoint = env.get("VC_S3_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
    secure = _flag(env, "VC_S3_SECURE", endpoint != DEFAULT_ENDPOINT)
    if "://" in endpoint:
        scheme, _, rest = endpoint.partition("://")
        if scheme.lower() not in {"http", "https"} or "/" in rest.rstrip("/"):
            raise ConfigError("VC_S3_ENDPOINT", endpoint, "host[:port] or http(s)://host[:port] without a path")
        endpoint, secure = rest.rstrip("/"), scheme.lower() == "https"
    access, secret, token, source = _credentials(env)
    return StorageSettings(
        endpoint=endpoint, secure=secure, region=env.get("VC_S3_REGION", "").strip() or None,
        ca_bundle=env.get("VC_S3_CA_BUNDLE", "").strip() or None, cert_check=_flag(env, "VC_S3_CERT_CHECK", True),
        retries=_positive(env, "VC_S3_RETRIES", 3, int), timeout=_positive(env, "VC_S3_TIMEOUT", 10.0),
        access_key=access, secret_key=secret, session_token=token, credential_source=source,
    )


def load_secret_mapping(env: Mapping[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """Compile time: the Kubernetes secret holding the credentials, and {secret key: env variable}."""
    env = os.environ if env is None else env
    return (env.get("VC_S3_SECRET", "").strip() or DEFAULT_SECRET,
            parse_secret_keys(env.get("VC_S3_SECRET_KEYS", "")))


@dataclass
class Storage:
    """A minio client plus the settings it was made from (used to word errors)."""

    client: Any
    settings: StorageSettings
    scheme: str = "s3"

    @property
    def url(self) -> str:
        return self.settings.url(self.scheme)


def make_client(scheme: str = "s3", settings: StorageSettings | None = None) -> Storage:
    """A minio client for ``scheme`` from the settings (environment by default)."""
    import certifi
    import urllib3
    from minio import Minio

    settings = settings or load_storage_settings()
    endpoint = settings.endpoint_for(scheme)
    if not endpoint:
        raise ConfigError("VC_S3_ENDPOINT", "", "the MinIO/S3 server's host:port (needed for minio:// URIs)")
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=settings.timeout, read=max(60.0, settings.timeout)),
        maxsize=10,
        cert_reqs="CERT_REQUIRED" if settings.cert_check else "CERT_NONE",
        ca_certs=settings.ca_bundle or os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(total=settings.retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    try:
        client = Minio(endpoint, access_key=settings.access_key, secret_key=settings.secret_key,
                       session_token=settings.session_token, secure=settings.secure, region=settings.region,
                       http_client=http, cert_check=settings.cert_check)
    except ValueError as exc:
        raise ConfigError("VC_S3_ENDPOINT", endpoint, f"a valid host[:port] ({exc})") from None
    return Storage(client, settings, scheme)


def _storage(target: ObjectURI, storage: Storage | None) -> Storage:
    return storage if storage is not None else make_client(target.scheme)


@contextlib.contextmanager
def _translated(storage: Storage, target: ObjectURI, action: str) -> Iterator[None]:
    """Turn minio/urllib3 failures into one StorageError line that says what to check."""
    import urllib3
    from minio.error import InvalidResponseError, S3Error, ServerError

    where = f"object storage at {storage.url}"
    try:
        yield
    except S3Error as exc:
        code = exc.code or ""
        if code == "NoSuchBucket" or (code in _NOT_FOUND and not _bucket_exists(storage, target.bucket)):
            raise MissingBucketError(f"cannot {action} {target}: bucket {target.bucket!r} does not exist "
                                     f"at {storage.url}") from None
        if code in _NOT_FOUND:
            raise MissingObjectError(f"cannot {action} {target}: no such object at {storage.url}") from None
        if code in _CREDENTIAL_CODES:
            raise CredentialsError(
                f"cannot {action} {target}: {where} rejected the credentials ({code}); check the storage secret "
                f"mapped to {storage.settings.credential_source}") from None
        if code == "AccessDenied":
            raise CredentialsError(
                f"cannot {action} {target}: access denied by {where} (wrong credentials, or the key from "
                f"{storage.settings.credential_source} lacks permission on bucket {target.bucket!r})") from None
        raise StorageError(f"cannot {action} {target}: {where} answered {code}: {exc.message}") from None
    except ServerError as exc:
        raise StorageError(f"cannot {action} {target}: {where} failed with HTTP {exc.status_code}") from None
    except InvalidResponseError as exc:
        raise StorageError(f"cannot {action} {target}: {storage.url} did not answer like S3 "
                           f"(is VC_S3_ENDPOINT right?): {str(exc).splitlines()[0]}") from None
    except urllib3.exceptions.HTTPError as exc:  # connection, DNS, TLS and protocol failures
        reason = getattr(exc, "reason", None) or exc
        raise UnreachableError(f"cannot {action} {target}: cannot reach {where}: {_short(reason)}") from None
    except ConfigError:
        raise
    except ValueError as exc:  # minio's own argument checks (names, sizes)
        raise ConfigError("uri", str(target), str(exc)) from None


def _short(reason: Any) -> str:
    text = str(reason)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return text.split(": ", 1)[-1][:200]


def _bucket_exists(storage: Storage, bucket: str) -> bool:
    try:
        return bool(storage.client.bucket_exists(bucket))
    except Exception:  # the original error is the one worth reporting
        return True


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(storage: Storage, bucket: str, key: str, dest: Path) -> str:
    """Stream one object to ``dest``, hashing as it goes; a checksum mismatch leaves nothing behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial")
    digest = hashlib.sha256()
    response = storage.client.get_object(bucket, key)
    try:
        expected = response.headers.get(_SHA256_HEADER)
        with open(partial, "wb") as f:
            for chunk in response.stream(_CHUNK):
                digest.update(chunk)
                f.write(chunk)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        response.close()
        response.release_conn()
    if expected and digest.hexdigest() != expected:
        partial.unlink(missing_ok=True)
        raise StorageError(f"{bucket}/{key}: checksum mismatch after download "
                           f"(sha256 {digest.hexdigest()}, object metadata says {expected})")
    os.replace(partial, dest)
    return digest.hexdigest()


def _inside(root: Path, relative: str) -> Path:
    dest = (root / relative).resolve()
    if root.resolve() not in dest.parents:
        raise StorageError(f"refusing to write object {relative!r} outside {root}")
    return dest


def download(uri: str, local_dir: str | os.PathLike, *, storage: Storage | None = None) -> Path:
    """Download one object (-> the file) or every object under a prefix (-> a folder) into ``local_dir``.

    A key that names an object is fetched as ``local_dir/<name>``; otherwise the key is a prefix and
    its objects land under ``local_dir/<last prefix part>/`` with their relative paths.
    """
    target = parse_uri(uri)
    storage = _storage(target, storage)
    local_dir = Path(local_dir)
    local_dir.mkdir(parents=True, exist_ok=True)
    with _translated(storage, target, "download"):
        if target.key and not target.key.endswith("/"):
            from minio.error import S3Error

            try:
                storage.client.stat_object(target.bucket, target.key)
                found = True
            except S3Error as exc:
                if exc.code not in _NOT_FOUND:
                    raise
                found = False
            if found:
                dest = local_dir / PurePosixPath(target.key).name
                _fetch(storage, target.bucket, target.key, dest)
                return dest
        prefix = target.prefix
        objects = [o for o in storage.client.list_objects(target.bucket, prefix=prefix, recursive=True)
                   if not o.is_dir and not o.object_name.endswith("/")]
        if not objects:
            if not storage.client.bucket_exists(target.bucket):
                raise MissingBucketError(f"cannot download {target}: bucket {target.bucket!r} does not exist "
                                   f"at {storage.url}")
            raise MissingObjectError(f"cannot download {target}: no such object, and no objects under "
                               f"{target.scheme}://{target.bucket}/{prefix} at {storage.url}")
        root = local_dir / (PurePosixPath(prefix.rstrip("/")).name or target.bucket)
        for obj in objects:
            _fetch(storage, target.bucket, obj.object_name, _inside(root, obj.object_name[len(prefix):]))
    return root


@contextlib.contextmanager
def localized(path: str | os.PathLike, workdir: str | os.PathLike | None = None) -> Iterator[Path]:
    """A local path for ``path``: itself when local, else a downloaded copy removed afterwards."""
    if not is_remote(str(path)):
        yield Path(path)
        return
    scratch = Path(tempfile.mkdtemp(prefix="vc-download-", dir=workdir))
    try:
        yield download(str(path), scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def upload_file(local_path: str | os.PathLike, uri: str, *, storage: Storage | None = None,
                part_size: int = 0) -> dict:
    """Upload one file (multipart above ``part_size``, or minio's choice when 0) with its SHA-256.

    A URI ending in '/' is a prefix: the file keeps its name under it.
    """
    local_path = Path(local_path)
    if not local_path.is_file():
        raise ArtifactError(f"cannot upload {local_path}: not a file")
    target = parse_uri(uri)
    if not target.key or target.key.endswith("/"):
        target = target.child(local_path.name)
    storage = _storage(target, storage)
    digest, size = sha256_file(local_path), local_path.stat().st_size
    with _translated(storage, target, "upload to"):
        result = storage.client.fput_object(target.bucket, target.key, str(local_path),
                                            content_type=_content_type(local_path.name),
                                            metadata={SHA256_META: digest}, part_size=part_size)
    return {"uri": str(target), "sha256": digest, "size": size, "etag": result.etag}


def upload_dir(local_dir: str | os.PathLike, uri: str, *, storage: Storage | None = None,
               part_size: int = 0) -> dict[str, dict]:
    """Upload every file under ``local_dir`` below the prefix ``uri``; returns {relative path: upload info}."""
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise ArtifactError(f"cannot upload {local_dir}: not a folder")
    target = parse_uri(uri)
    storage = _storage(target, storage)
    uploaded = {}
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(local_dir).as_posix()
        uploaded[relative] = upload_file(path, str(target.child(relative)), storage=storage, part_size=part_size)
    return uploaded


def put_bytes(data: bytes, uri: str, *, storage: Storage | None = None,
              content_type: str = "application/octet-stream") -> dict:
    target = parse_uri(uri)
    storage = _storage(target, storage)
    digest = hashlib.sha256(data).hexdigest()
    with _translated(storage, target, "upload to"):
        result = storage.client.put_object(target.bucket, target.key, io.BytesIO(data), len(data),
                                           content_type=content_type, metadata={SHA256_META: digest})
    return {"uri": str(target), "sha256": digest, "size": len(data), "etag": result.etag}


def put_json(data: Any, uri: str, *, storage: Storage | None = None) -> dict:
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return put_bytes(text.encode(), uri, storage=storage, content_type="application/json")


def get_bytes(uri: str, *, storage: Storage | None = None, missing_ok: bool = False) -> bytes | None:
    """An object's content (checksum-checked); ``None`` for a missing object when ``missing_ok``."""
    target = parse_uri(uri)
    storage = _storage(target, storage)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with _translated(storage, target, "read"):
                _fetch(storage, target.bucket, target.key, Path(tmp) / "object")
        except MissingObjectError:
            if missing_ok:
                return None
            raise
        return (Path(tmp) / "object").read_bytes()


def get_json(uri: str, *, storage: Storage | None = None, missing_ok: bool = False) -> Any:
    data = get_bytes(uri, storage=storage, missing_ok=missing_ok)
    if data is None:
        return None
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{uri} is not valid JSON: {exc}") from None


def list_keys(uri: str, *, storage: Storage | None = None) -> list[str]:
    """Every object key under the prefix ``uri`` (recursive, sorted); empty when there is none."""
    target = parse_uri(uri)
    storage = _storage(target, storage)
    with _translated(storage, target, "list"):
        return sorted(o.object_name for o in storage.client.list_objects(target.bucket, prefix=target.prefix,
                                                                         recursive=True)
                      if not o.is_dir and not o.object_name.endswith("/"))


def delete_keys(bucket_uri: str, keys: list[str], *, storage: Storage | None = None) -> None:
    """Delete ``keys`` (in the order given) from the bucket of ``bucket_uri``."""
    target = parse_uri(bucket_uri)
    storage = _storage(target, storage)
    for key in keys:
        with _translated(storage, ObjectURI(target.scheme, target.bucket, key), "delete"):
            storage.client.remove_object(target.bucket, key)


def stored_sha256(uri: str, *, storage: Storage | None = None) -> str | None:
    """The SHA-256 an object was uploaded with (its ``x-amz-meta-sha256``), or None when it carries none."""
    target = parse_uri(uri)
    storage = _storage(target, storage)
    with _translated(storage, target, "stat"):
        stat = storage.client.stat_object(target.bucket, target.key)
    return (stat.metadata or {}).get(_SHA256_HEADER)
