"""Object storage against a real S3-compatible server (moto) on 127.0.0.1, through the real minio client.

Covers URI and settings parsing, single-object and prefix transfers, a multipart upload with its
checksum checked after download, the clear errors (missing bucket, missing object, rejected
credentials, unreachable endpoint), the publish step's pipeline wiring, and dataset/model inputs given
as s3:// URIs. Publications themselves are tested on real pipeline outputs in tests/test_publish.py.
"""

import hashlib
import inspect
import json
import os
import socket
import urllib.request
import uuid
import zipfile
from pathlib import Path

import pytest
import yaml

from visioncompress.errors import ConfigError
from visioncompress.storage import (
    CredentialsError, MissingBucketError, MissingObjectError, StorageError, UnreachableError, download, get_json,
    is_remote, load_storage_settings, localized, make_client, parse_uri, sha256_file, upload_dir,
    upload_file,
)

MiB = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop()


def use_moto(mp, server: str) -> None:
    """Point the storage settings (environment) at the moto server, with its test credentials."""
    for name in ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "AWS_SESSION_TOKEN", "VC_S3_CA_BUNDLE", "VC_S3_SECURE"):
        mp.delenv(name, raising=False)
    mp.setenv("VC_S3_ENDPOINT", f"http://{server}")
    mp.setenv("VC_S3_REGION", "us-east-1")
    mp.setenv("VC_S3_RETRIES", "0")
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    use_moto(monkeypatch, s3_server)
    return s3_server


@pytest.fixture
def raw_client(s3_server):
    from minio import Minio

    return Minio(s3_server, access_key="testing", secret_key="testing", secure=False, region="us-east-1")


@pytest.fixture
def bucket(raw_client):
    name = f"vc-{uuid.uuid4().hex[:12]}"
    raw_client.make_bucket(name)
    return name


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- URIs and settings


def test_uri_parsing():
    uri = parse_uri("s3://models/resnet/v1/model.pt")
    assert (uri.scheme, uri.bucket, uri.key) == ("s3", "models", "resnet/v1/model.pt")
    assert str(parse_uri("minio://data/").child("a", "b.zip")) == "minio://data/a/b.zip"
    assert parse_uri("s3://data/folder").prefix == "folder/" and parse_uri("s3://data").prefix == ""
    assert is_remote("s3://a/b") and is_remote("minio://a/b") and not is_remote("/tmp/s3://x")
    for bad in ("http://bucket/key", "s3:/bucket/key", "s3://Bad_Bucket/key", "s3://ab/key", "s3://bkt/../x"):
        with pytest.raises(ConfigError) as info:
            parse_uri(bad, "DATASET_PATH")
        assert info.value.parameter == "DATASET_PATH"


def test_settings_come_from_the_environment():
    settings = load_storage_settings({"VC_S3_ENDPOINT": "http://minio.storage:9000", "MINIO_ACCESS_KEY": "key-id-1",
                                      "MINIO_SECRET_KEY": "secret-value-1"})
    assert (settings.endpoint, settings.secure, settings.credential_source) == \
        ("minio.storage:9000", False, "MINIO_ACCESS_KEY/MINIO_SECRET_KEY")
    assert settings.secret_key == "secret-value-1" and "secret-value-1" not in repr(settings)
    default = load_storage_settings({})  # the in-cluster MinIO of a standard Kubeflow install, plain HTTP
    assert (default.endpoint_for("s3"), default.endpoint_for("minio"), default.secure) == \
        ("minio-service.kubeflow:9000", "minio-service.kubeflow:9000", False)
    assert load_storage_settings({"VC_S3_ENDPOINT": "s3.amazonaws.com"}).secure is True
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY"):
        load_storage_settings({"AWS_ACCESS_KEY_ID": "only-half"})
    with pytest.raises(ConfigError, match="VC_S3_SECURE"):
        load_storage_settings({"VC_S3_SECURE": "maybe"})


# ---------------------------------------------------------------- transfers


def test_single_object_round_trip(s3_env, bucket, raw_client, tmp_path):
    source = tmp_path / "model.pt"
    source.write_bytes(os.urandom(300_000))
    info = upload_file(source, f"s3://{bucket}/checkpoints/model.pt")
    assert info["sha256"] == sha256_file(source) and info["size"] == 300_000
    stat = raw_client.stat_object(bucket, "checkpoints/model.pt")
    assert stat.metadata["x-amz-meta-sha256"] == info["sha256"]

    local = download(f"s3://{bucket}/checkpoints/model.pt", tmp_path / "down")
    assert local == tmp_path / "down" / "model.pt" and local.read_bytes() == source.read_bytes()
    # A URI ending in '/' is a prefix: the file keeps its name.
    assert upload_file(source, f"minio://{bucket}/other/")["uri"] == f"minio://{bucket}/other/model.pt"


def test_prefix_round_trip(s3_env, bucket, tmp_path):
    folder = tmp_path / "images"
    for rel, data in {"cat/1.png": b"one", "cat/2.png": b"two", "dog/deep/3.png": b"three"}.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    uploaded = upload_dir(folder, f"s3://{bucket}/datasets/pets")
    assert sorted(uploaded) == ["cat/1.png", "cat/2.png", "dog/deep/3.png"]

    local = download(f"minio://{bucket}/datasets/pets", tmp_path / "down")
    assert local == tmp_path / "down" / "pets" and _tree(local) == _tree(folder)
    with localized(f"s3://{bucket}/datasets/pets/") as copy:
        assert _tree(copy) == _tree(folder)
    assert not copy.exists(), "localized copies are removed afterwards"


def test_multipart_upload_is_checksum_checked_after_download(s3_env, bucket, raw_client, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * MiB))
    info = upload_file(big, f"s3://{bucket}/big/big.bin", part_size=5 * MiB)
    assert info["etag"].endswith("-3"), "12 MiB in 5 MiB parts is a 3-part multipart upload"

    local = download(f"s3://{bucket}/big/big.bin", tmp_path / "down")
    assert hashlib.sha256(local.read_bytes()).hexdigest() == info["sha256"] == sha256_file(big)

    # An object whose content no longer matches its recorded checksum is refused, and nothing is left behind.
    import io

    raw_client.put_object(bucket, "big/tampered.bin", io.BytesIO(b"not the original"), 16,
                          metadata={"sha256": info["sha256"]})
    with pytest.raises(StorageError, match="checksum mismatch"):
        download(f"s3://{bucket}/big/tampered.bin", tmp_path / "tampered")
    assert list((tmp_path / "tampered").iterdir()) == []


# ---------------------------------------------------------------- clear errors


def test_missing_bucket_is_a_clear_error(s3_env, tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(MissingBucketError, match="bucket 'no-such-bucket' does not exist at http://127.0.0.1"):
        download("s3://no-such-bucket/data.zip", tmp_path)
    with pytest.raises(MissingBucketError, match="does not exist"):
        upload_file(tmp_path / "f.txt", "s3://no-such-bucket/f.txt")


def test_missing_object_is_a_clear_error(s3_env, bucket, tmp_path):
    with pytest.raises(MissingObjectError) as info:
        download(f"s3://{bucket}/nothing/here.zip", tmp_path)
    assert f"s3://{bucket}/nothing/here.zip" in str(info.value) and "no such object" in str(info.value)
    assert get_json(f"s3://{bucket}/latest.json", missing_ok=True) is None


def _set_moto_auth(endpoint: str, free_requests: str) -> None:
    request = urllib.request.Request(f"http://{endpoint}/moto-api/reset-auth", data=free_requests.encode(),
                                     method="POST", headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_wrong_credentials_are_a_clear_error(s3_env, bucket, tmp_path, monkeypatch):
    import boto3

    source = tmp_path / "f.txt"
    source.write_text("payload")
    upload_file(source, f"s3://{bucket}/f.txt")
    # From here the server checks signatures; the 3 IAM calls that create a real user are let through.
    _set_moto_auth(s3_env, "3")
    try:
        iam = boto3.client("iam", endpoint_url=f"http://{s3_env}", region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        iam.create_user(UserName="publisher")
        key = iam.create_access_key(UserName="publisher")["AccessKey"]
        iam.put_user_policy(UserName="publisher", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))

        with pytest.raises(CredentialsError, match="AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"):
            download(f"s3://{bucket}/f.txt", tmp_path / "a")  # a key the server does not know
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        with pytest.raises(CredentialsError, match="SignatureDoesNotMatch|access denied"):
            upload_file(source, f"s3://{bucket}/g.txt")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        assert download(f"s3://{bucket}/f.txt", tmp_path / "b").read_text() == "payload"
    finally:
        _set_moto_auth(s3_env, "inf")


def test_unreachable_endpoint_is_a_clear_error(s3_env, tmp_path, monkeypatch):
    monkeypatch.setenv("VC_S3_ENDPOINT", f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(UnreachableError, match=r"cannot reach object storage at http://127\.0\.0\.1:\d+: "
                                               "connection refused"):
        download("s3://some-bucket/x.zip", tmp_path)


# ---------------------------------------------------------------- inputs given as URIs


@pytest.fixture(scope="module")
def fashion_zip(tmp_path_factory) -> Path:
    """A small real image folder (3 Fashion-MNIST classes x 12 PNGs), zipped."""
    from PIL import Image

    from visioncompress.data.sources import read_fashion_mnist

    raw = read_fashion_mnist()
    root = tmp_path_factory.mktemp("fashion")
    folder = root / "fashion-folder"
    for label in (0, 1, 7):
        name = raw.classes[label].replace("/", "-")
        (folder / name).mkdir(parents=True)
        for i, index in enumerate((raw.train_labels == label).nonzero()[0][:12]):
            Image.fromarray(raw.train_images[index, :, :, 0]).save(folder / name / f"{i}.png")
    archive = root / "fashion-folder.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(folder.rglob("*.png")):
            z.write(path, path.relative_to(root).as_posix())
    return archive


def _prepare_reads_uris() -> bool:
    import visioncompress.data.prepare as prepare

    return "localized" in inspect.getsource(prepare)


def _checkpoints_read_uris() -> bool:
    import visioncompress.models.io as io

    return "localized" in inspect.getsource(io)


def test_dataset_archive_from_s3_prepares(s3_env, bucket, fashion_zip, tmp_path):
    from visioncompress.artifacts import read_dataset_manifest
    from visioncompress.config import DataConfig
    from visioncompress.data import prepare_dataset

    uri = upload_file(fashion_zip, f"s3://{bucket}/datasets/fashion-folder.zip")["uri"]
    with localized(uri) as archive:
        manifest = prepare_dataset(DataConfig(source="folder", path=str(archive), insize=16, calibration_samples=8),
                                   tmp_path / "dataset")
    assert manifest.classes == ["Sneaker", "T-shirt-top", "Trouser"]
    assert sum(manifest.splits[s] for s in ("train", "val", "test")) == 36
    assert read_dataset_manifest(tmp_path / "dataset").input_size == 16


@pytest.mark.skipif(not _prepare_reads_uris(), reason="data/prepare.py does not read URIs yet (hook not integrated)")
def test_prepare_dataset_accepts_s3_and_minio_uris(s3_env, bucket, fashion_zip, tmp_path):
    from visioncompress.config import DataConfig
    from visioncompress.data import prepare_dataset

    upload_file(fashion_zip, f"s3://{bucket}/datasets/fashion-folder.zip")
    manifest = prepare_dataset(DataConfig(source="folder", path=f"minio://{bucket}/datasets/fashion-folder.zip",
                                          insize=16, calibration_samples=8), tmp_path / "dataset")
    assert manifest.source["path"] == f"minio://{bucket}/datasets/fashion-folder.zip"
    assert len(manifest.classes) == 3
    with pytest.raises(MissingObjectError):
        prepare_dataset(DataConfig(source="folder", path=f"s3://{bucket}/datasets/missing.zip"), tmp_path / "x")


@pytest.mark.skipif(not _checkpoints_read_uris(), reason="models/io.py does not read URIs yet (hook not integrated)")
def test_user_checkpoint_from_s3(s3_env, bucket, tmp_path):
    import torch

    from visioncompress.models.io import load_user_checkpoint

    model = torch.nn.Linear(4, 2)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    uri = upload_file(tmp_path / "weights.pt", f"s3://{bucket}/checkpoints/weights.pt")["uri"]
    loaded = load_user_checkpoint(uri, lambda: torch.nn.Linear(4, 2))
    assert torch.equal(loaded.weight, model.weight)


def test_remote_dataset_is_fetched_once_per_pod(s3_env, bucket, fashion_zip, tmp_path, monkeypatch):
    """A folder dataset on S3 stores file lists; the archive is downloaded once into the pod's cache and every
    later stage reads from there; a source that changed after preparation is refused."""
    import visioncompress.storage.s3 as s3
    from visioncompress.config import DataConfig
    from visioncompress.data import load_dataset, prepare_dataset
    from visioncompress.errors import ArtifactError

    monkeypatch.setenv("VC_CACHE_DIR", str(tmp_path / "cache"))
    uri = f"s3://{bucket}/datasets/fashion-folder.zip"
    upload_file(fashion_zip, uri)
    manifest = prepare_dataset(DataConfig(source="folder", path=uri, insize=16, calibration_samples=8),
                               tmp_path / "dataset")
    assert manifest.storage == "files" and manifest.source["root"] == uri
    entries = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and (entries[0] / ".complete").is_file()

    downloads = []
    real_download = s3.download
    monkeypatch.setattr(s3, "download", lambda *a, **k: downloads.append(a) or real_download(*a, **k))
    for _ in range(2):  # two later stages in the same pod
        x, y = next(load_dataset(tmp_path / "dataset").batches("train", 4))
        assert x.shape == (4, 3, 16, 16)
    assert downloads == []

    other = tmp_path / "v2.zip"
    other.write_bytes(fashion_zip.read_bytes() + b"\0")  # same images, different object: a new ETag
    upload_file(other, uri)
    with pytest.raises(ArtifactError, match="changed after the dataset was prepared"):
        next(load_dataset(tmp_path / "dataset").batches("train", 4))
