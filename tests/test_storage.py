"""Object storage against a real S3-compatible server (moto) on 127.0.0.1, through the real minio client.

Covers URI and settings parsing, single-object and prefix transfers, a multipart upload with its
checksum checked after download, the clear errors (missing bucket, missing object, rejected
credentials, unreachable endpoint), publishing (dated prefix, manifest, latest pointer), the publish
component and its pipeline wiring, and dataset/model inputs given as s3:// URIs.
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

from visioncompress.artifacts import ModelMetadata, write_model_metadata
from visioncompress.errors import ArtifactError, ConfigError
from visioncompress.storage import (
    CredentialsError, MissingBucketError, MissingObjectError, StorageError, UnreachableError, download, get_json,
    is_remote, load_storage_settings, localized, make_client, parse_uri, publish, sha256_file, upload_dir,
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


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    for name in ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "AWS_SESSION_TOKEN", "VC_S3_CA_BUNDLE", "VC_S3_SECURE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VC_S3_ENDPOINT", f"http://{s3_server}")
    monkeypatch.setenv("VC_S3_REGION", "us-east-1")
    monkeypatch.setenv("VC_S3_RETRIES", "0")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
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
    assert load_storage_settings({}).endpoint_for("s3") == "s3.amazonaws.com"
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY"):
        load_storage_settings({"AWS_ACCESS_KEY_ID": "only-half"})
    with pytest.raises(ConfigError, match="VC_S3_ENDPOINT"):
        make_client("minio", load_storage_settings({}))
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


# ---------------------------------------------------------------- publishing


def _model_dir(path: Path, *, stage: str, precision: str, fmt: str = "onnx", payload: bytes = b"onnx-bytes") -> Path:
    path.mkdir(parents=True)
    metadata = ModelMetadata(task="classification", architecture="resnet18", classes=["a", "b"], input_size=32,
                             channels=3, mean=[0.5] * 3, std=[0.25] * 3, format=fmt, precision=precision,
                             stage=stage, params={"quant_format": "QDQ", "per_channel": False},
                             parent={"stage": "finetune", "uri": "/artifacts/fp32"})
    (path / metadata.file_name).write_bytes(payload)
    write_model_metadata(path, metadata)
    return path


def _results(path: Path, top1: float) -> Path:
    rows = [{"variant": "fp32", "backend": "torch", "format": "torch-module", "precision": "fp32",
             "stage": "finetune", "architecture": "resnet18", "batch_size": 1, "p50_ms": 3.0, "p90_ms": 3.5,
             "throughput_ips": 300.0, "top1": 90.0, "size_mb": 44.0},
            {"variant": "int8", "backend": "onnxruntime", "format": "onnx", "precision": "int8",
             "stage": "quantize_onnx", "architecture": "resnet18", "batch_size": 1, "p50_ms": 1.0, "p90_ms": 1.2,
             "throughput_ips": 900.0, "top1": top1, "top1_delta": round(top1 - 90.0, 3), "speedup": 3.0,
             "size_mb": 11.0}]
    path.write_text(json.dumps(rows))
    return path


def _publish(tmp_path: Path, destination: str, top1: float, day: str, budget: float = 1.0) -> dict:
    work = tmp_path / day
    model = _model_dir(work / "onnx_ptq", stage="quantize_onnx", precision="int8", payload=os.urandom(4096))
    report = work / "report.md"
    report.write_text(f"# report {day}\n")
    return publish({"onnx_ptq": model}, report, _results(work / "results.json", top1), destination,
                   accuracy_budget=budget, run_date=day, sources={"onnx_ptq": f"minio://kfp/runs/{day}/model"})


def test_publish_dated_prefix_manifest_and_latest_pointer(s3_env, bucket, raw_client, tmp_path):
    destination = f"s3://{bucket}/resnet18"
    first = _publish(tmp_path, destination, 88.0, "2026-11-23")
    names = sorted(o.object_name for o in raw_client.list_objects(bucket, recursive=True))
    assert names == [f"resnet18/2026-11-23/{n}" for n in
                     ("manifest.json", "models/onnx_ptq/model.json", "models/onnx_ptq/model.onnx", "report.md",
                      "results.json")] + ["resnet18/latest.json"]
    manifest = get_json(f"{destination}/2026-11-23/manifest.json")
    assert manifest == first and manifest["destination"] == f"{destination}/2026-11-23/"
    assert manifest["metrics"]["onnx_ptq"]["top1"] == 88.0
    assert manifest["parameters"]["onnx_ptq"] == {"quant_format": "QDQ", "per_channel": False}
    assert manifest["sources"]["onnx_ptq"]["artifact"] == "minio://kfp/runs/2026-11-23/model"
    assert manifest["latest"]["moved"] and manifest["latest"]["reason"] == "first publication"
    local_model = tmp_path / "2026-11-23" / "onnx_ptq" / "model.onnx"
    assert manifest["checksums"]["models/onnx_ptq/model.onnx"]["sha256"] == sha256_file(local_model)
    # Every checksum in the manifest matches what is stored.
    fetched = download(f"{destination}/2026-11-23/", tmp_path / "fetched")
    for relative, entry in manifest["checksums"].items():
        assert sha256_file(fetched / relative) == entry["sha256"], relative
    assert get_json(f"{destination}/latest.json")["date"] == "2026-11-23"

    # 0.5 points lower: within the 1.0 budget, the pointer moves.
    second = _publish(tmp_path, destination, 87.5, "2026-11-24")
    assert second["latest"]["moved"]
    latest = get_json(f"{destination}/latest.json")
    assert (latest["date"], latest["top1"], latest["prefix"]) == ("2026-11-24", 87.5, f"{destination}/2026-11-24/")

    # 3 points lower: published under its date, but latest stays on the better model.
    third = _publish(tmp_path, destination, 84.5, "2026-11-25")
    assert not third["latest"]["moved"] and "3.000 points below 87.500" in third["latest"]["reason"]
    assert get_json(f"{destination}/2026-11-25/manifest.json")["top1"] == 84.5
    assert get_json(f"{destination}/latest.json")["date"] == "2026-11-24"


def test_publish_refuses_bad_inputs_before_uploading(s3_env, bucket, raw_client, tmp_path):
    model = _model_dir(tmp_path / "m", stage="quantize_onnx", precision="int8")
    report, results = tmp_path / "r.md", _results(tmp_path / "r.json", 80.0)
    report.write_text("# r\n")
    with pytest.raises(ConfigError, match="ACCURACY_BUDGET"):
        publish({"onnx_ptq": model}, report, results, f"s3://{bucket}/p", accuracy_budget=-1)
    with pytest.raises(ConfigError, match="RUN_DATE"):
        publish({"onnx_ptq": model}, report, results, f"s3://{bucket}/p", run_date="next tuesday")
    with pytest.raises(ArtifactError, match="model.json"):
        publish({"onnx_ptq": tmp_path}, report, results, f"s3://{bucket}/p")
    with pytest.raises(MissingBucketError):
        publish({"onnx_ptq": model}, report, results, "s3://missing-bucket-x/p")
    assert list(raw_client.list_objects(bucket, recursive=True)) == []


def test_publish_component_is_one_line_on_error(s3_env, bucket, tmp_path, capsys):
    from kfp.dsl import Artifact, Markdown, Model

    from components.publish.component import publish as component

    model = _model_dir(tmp_path / "m", stage="quantize_onnx", precision="int8")
    report, results = tmp_path / "r.md", _results(tmp_path / "r.json", 80.0)
    report.write_text("# r\n")
    manifest = Artifact(uri=str(tmp_path / "out" / "manifest"))
    component.python_func(report=Markdown(uri=str(report)), results=Artifact(uri=str(results)), manifest=manifest,
                          onnx_ptq=Model(uri=str(model)), DESTINATION=f"s3://{bucket}/nightly",
                          ACCURACY_BUDGET=1.0, RUN_DATE="2026-11-25", PRIMARY="")
    written = json.loads(Path(manifest.path).read_text())
    assert written["destination"] == f"s3://{bucket}/nightly/2026-11-25/" and manifest.metadata["latest_moved"]
    assert written["sources"]["onnx_ptq"]["artifact"] == str(model)

    with pytest.raises(SystemExit) as info:
        component.python_func(report=Markdown(uri=str(report)), results=Artifact(uri=str(results)),
                              manifest=manifest, onnx_ptq=Model(uri=str(model)), DESTINATION="s3://missing-bkt/x")
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("visioncompress: publish: cannot upload to s3://missing-bkt/") and "\n" not in err


def test_publish_step_maps_the_secret_and_never_caches(tmp_path, monkeypatch):
    from kfp import compiler, dsl
    from kfp.dsl import Artifact, Markdown, Model, Output

    from pipelines.publish_step import add_publish

    monkeypatch.setenv("VC_S3_SECRET", "team-bucket")
    monkeypatch.setenv("VC_S3_SECRET_KEYS", "accesskey=AWS_ACCESS_KEY_ID,secretkey=AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("VC_S3_ENDPOINT", "https://minio.storage.svc:9000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "compile-time-secret")

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def fake_report(report: Output[Markdown], results: Output[Artifact], model: Output[Model]):
        pass

    @dsl.pipeline(name="publish-wiring")
    def wiring(DESTINATION: str = "", ACCURACY_BUDGET: float = 1.0, RUN_DATE: str = ""):
        made = fake_report()
        add_publish(made, {"onnx_ptq": made.outputs["model"]}, destination=DESTINATION,
                    accuracy_budget=ACCURACY_BUDGET, run_date=RUN_DATE)

    path = tmp_path / "wiring.yaml"
    compiler.Compiler().compile(wiring, str(path))
    spec, platform = yaml.safe_load_all(path.read_text())
    placed = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-publish"]
    secret = placed["secretAsEnv"][0]
    assert secret["secretName"] == "team-bucket" or secret.get("secretNameParameter", {}).get(
        "runtimeValue", {}).get("constant") == "team-bucket"
    assert {(m["secretKey"], m["envVar"]) for m in secret["keyToEnv"]} == \
        {("accesskey", "AWS_ACCESS_KEY_ID"), ("secretkey", "AWS_SECRET_ACCESS_KEY")}
    assert "nodeSelector" in placed
    container = spec["deploymentSpec"]["executors"]["exec-publish"]["container"]
    assert {"name": "VC_S3_ENDPOINT", "value": "https://minio.storage.svc:9000"} in container["env"]
    tasks = spec["root"]["dag"]["tasks"]
    condition = next(t for name, t in tasks.items() if name.startswith("condition"))
    assert "DESTINATION" in condition["triggerPolicy"]["condition"]
    publish_task = next(iter(spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"].values()))
    assert publish_task["cachingOptions"] == {} or publish_task["cachingOptions"].get("enableCache") is not True
    assert "compile-time-secret" not in path.read_text(), "credentials never reach the compiled pipeline"


def test_publish_runs_in_a_local_pipeline_only_when_asked(s3_env, bucket, raw_client, tmp_path):
    """kfp.local runs the real component; credentials reach it only through the environment."""
    from kfp import dsl, local
    from kfp.dsl import Artifact, Markdown, Model, Output

    from pipelines.publish_step import add_publish

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def stages(report: Output[Markdown], results: Output[Artifact], model: Output[Model]):
        import json
        from pathlib import Path

        from visioncompress.artifacts import ModelMetadata, write_model_metadata

        Path(model.path).mkdir(parents=True)
        (Path(model.path) / "model.onnx").write_bytes(b"onnx" * 64)
        write_model_metadata(Path(model.path), ModelMetadata(
            task="classification", architecture="resnet18", classes=["a", "b"], input_size=32, channels=3,
            mean=[0.5] * 3, std=[0.25] * 3, format="onnx", precision="int8", stage="quantize_onnx"))
        Path(report.path).write_text("# report\n")
        Path(results.path).write_text(json.dumps([{"format": "onnx", "precision": "int8", "stage": "quantize_onnx",
                                                   "architecture": "resnet18", "batch_size": 1, "top1": 81.0}]))

    @dsl.pipeline(name="publish-locally")
    def pipeline(DESTINATION: str = "", ACCURACY_BUDGET: float = 1.0, RUN_DATE: str = ""):
        made = stages()
        add_publish(made, {"onnx_ptq": made.outputs["model"]}, destination=DESTINATION,
                    accuracy_budget=ACCURACY_BUDGET, run_date=RUN_DATE)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path))
    pipeline()  # no DESTINATION: nothing is published
    assert list(raw_client.list_objects(bucket, recursive=True)) == []
    pipeline(DESTINATION=f"s3://{bucket}/nightly", RUN_DATE="2026-11-30")
    assert get_json(f"s3://{bucket}/nightly/latest.json")["prefix"] == f"s3://{bucket}/nightly/2026-11-30/"
    assert get_json(f"s3://{bucket}/nightly/2026-11-30/manifest.json")["metrics"]["onnx_ptq"]["top1"] == 81.0


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


def test_latest_pointer_follows_map_for_detection_models():
    from visioncompress.storage.publish import _metrics_for, accuracy_of, pointer_decision

    class Meta:
        format, precision, stage, architecture = "onnx", "int8", "quantize_onnx", "fcos_resnet18_fpn"

    rows = [{"format": "onnx", "precision": "int8", "stage": "quantize_onnx", "architecture": "fcos_resnet18_fpn",
             "variant": "int8", "backend": "onnxruntime", "batch_size": 1, "mAP": 41.5, "mAP50": 70.2}]
    assert accuracy_of(_metrics_for(Meta, rows)) == ("mAP", 41.5)
    assert pointer_decision({"mAP": 42.0}, 41.5, 1.0, "mAP")["moved"] is True
    kept = pointer_decision({"mAP": 44.0}, 41.5, 1.0, "mAP")
    assert kept["moved"] is False and kept["reason"].startswith("mAP 41.500 is 2.500 points below")
