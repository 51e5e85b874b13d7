"""Untrusted inputs: bad parameters, files, datasets, objects and job files each end in one clear line.

Every case asserts exit code 2, exactly one ``visioncompress:`` line naming the parameter or file,
no traceback anywhere in the output, and no output artifact. Stages are called the way KFP calls
them (the component's python function, in this process); parameter and job-file cases go through
the CLI; two cases run a whole pipeline through ``visioncompress run --local``. A pickle whose
unpickling would create a file is refused locally and from S3, and never creates that file; a model
artifact whose bytes change after it was written is refused.
"""

from __future__ import annotations

import importlib
import io
import os
import shutil
import socket
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from kfp.dsl import Dataset, Metrics, Model

from visioncompress.artifacts import read_model_metadata
from visioncompress.cli import main as cli_main
from visioncompress.config import DataConfig
from visioncompress.data import prepare_dataset
from visioncompress.errors import ArtifactError
from visioncompress.models import load_torch_module, load_user_checkpoint

TINY = {"insize": 16, "MAX_TRAIN_SAMPLES": 64, "MAX_TEST_SAMPLES": 16, "CALIBRATION_SAMPLES": 8,
        "BATCH_SIZE": 16, "MODEL": "mobilenet_v3_small", "FINETUNE_EPOCHS": 1}


class _Payload:
    """Unpickling this creates ``path`` (stands in for any code a pickle could run)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mknod, (self.path,))


def write_payload(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "hook": _Payload(str(marker))}, path)
    return path


def _component(name):
    return getattr(importlib.import_module(f"visioncompress.components.{name}.component"), name)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("untrusted-data") / "dataset"
    prepare_dataset(DataConfig(insize=16, max_train_samples=64, max_test_samples=16, calibration_samples=8), path)
    return path


@pytest.fixture(scope="module")
def tiny_model(tiny_dataset, tmp_path_factory) -> Path:
    """A mobilenet_v3_small artifact written by the fine-tune stage (no training)."""
    from visioncompress.config import ModelConfig, TrainConfig
    from visioncompress.train import finetune

    path = tmp_path_factory.mktemp("untrusted-model") / "fp32"
    finetune(tiny_dataset, path, ModelConfig(model="mobilenet_v3_small"), TrainConfig(training=False))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 with one bucket; yields (bucket, minio client)."""
    from minio import Minio
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved = {k: os.environ.get(k) for k in ("VC_S3_ENDPOINT", "VC_S3_REGION", "VC_S3_RETRIES",
                                            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "VC_S3_SECURE")}
    os.environ.update({"VC_S3_ENDPOINT": f"http://127.0.0.1:{port}", "VC_S3_REGION": "us-east-1",
                       "VC_S3_RETRIES": "0", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    os.environ.pop("VC_S3_SECURE", None)
    client = Minio(f"127.0.0.1:{port}", access_key="testing", secret_key="testing", secure=False,
                   region="us-east-1")
    bucket = f"vc-{uuid.uuid4().hex[:10]}"
    client.make_bucket(bucket)
    yield bucket, client
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


def _put(s3, key: str, data: bytes) -> str:
    bucket, client = s3
    client.put_object(bucket, key, io.BytesIO(data), len(data))
    return f"s3://{bucket}/{key}"


# ---------------------------------------------------------------- bad inputs: writers


def _png(path: Path, size: int = 20, value: int = 0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


def _folder(root: Path, classes: dict[str, int]) -> Path:
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            _png(root / name / f"{i}.png", value=i * 10)
    return root


def _empty_folder(tmp, s3):
    (tmp / "images").mkdir()
    return {"DATASET_SOURCE": "folder", "DATASET_PATH": str(tmp / "images")}


def _one_class(tmp, s3):
    return {"DATASET_SOURCE": "folder", "DATASET_PATH": str(_folder(tmp / "images", {"cat": 4}))}


def _zero_byte_image(tmp, s3):
    root = _folder(tmp / "images", {"cat": 3, "dog": 3})
    (root / "dog" / "empty.png").write_bytes(b"")
    return {"DATASET_SOURCE": "folder", "DATASET_PATH": str(root)}


def _garbage_images(tmp, s3):
    root = _folder(tmp / "images", {"cat": 3, "dog": 3})
    for i in range(3):
        (root / "cat" / f"broken{i}.jpg").write_bytes(b"this is not a jpeg" * 10)
    return {"DATASET_SOURCE": "folder", "DATASET_PATH": str(root)}


def _empty_class(tmp, s3):
    root = _folder(tmp / "images", {"cat": 3, "dog": 0})
    return {"DATASET_SOURCE": "folder", "DATASET_PATH": str(root)}


def _missing_path(tmp, s3):
    return {"DATASET_SOURCE": "folder", "DATASET_PATH": str(tmp / "nowhere")}


def _truncated_zip(tmp, s3):
    root = _folder(tmp / "images", {"cat": 3, "dog": 3})
    archive = Path(shutil.make_archive(str(tmp / "data"), "zip", root))
    data = archive.read_bytes()
    broken = tmp / "data-broken.zip"
    broken.write_bytes(data[: len(data) // 2])
    return {"DATASET_SOURCE": "folder", "DATASET_PATH": str(broken)}


def _coco(tmp, category_id: int = 1, empty_image: bool = False) -> Path:
    import json

    root = tmp / "coco"
    (root / "annotations").mkdir(parents=True)
    for i in range(3):
        _png(root / "images" / f"{i}.png", size=32, value=50 * i)
    if empty_image:
        (root / "images" / "2.png").write_bytes(b"")
    doc = {"images": [{"id": i, "file_name": f"{i}.png", "width": 32, "height": 32} for i in range(3)],
           "categories": [{"id": 1, "name": "box"}, {"id": 2, "name": "ball"}],
           "annotations": [{"id": i + 1, "image_id": i, "category_id": category_id if i == 1 else 1,
                            "bbox": [2, 2, 10, 10], "area": 100, "iscrowd": 0} for i in range(3)]}
    (root / "annotations" / "instances_train.json").write_text(json.dumps(doc))
    return root


def _coco_bad_category(tmp, s3):
    return {"DATASET_SOURCE": "coco", "DATASET_PATH": str(_coco(tmp, category_id=7))}


def _coco_zero_byte_image(tmp, s3):
    return {"DATASET_SOURCE": "coco", "DATASET_PATH": str(_coco(tmp, empty_image=True))}


def _missing_bucket(tmp, s3):
    return {"DATASET_SOURCE": "folder", "DATASET_PATH": "s3://no-such-bucket-vc/images.zip"}


def _missing_object(tmp, s3):
    return {"DATASET_SOURCE": "folder", "DATASET_PATH": f"s3://{s3[0]}/nothing/here.zip"}


# Model files given as CUSTOM_MODEL_PATH (the fine-tune stage, MODEL=mobilenet_v3_small).


def _model_missing(tmp, s3):
    return str(tmp / "absent.pt")


def _model_zero_bytes(tmp, s3):
    (tmp / "empty.pt").write_bytes(b"")
    return str(tmp / "empty.pt")


def _model_garbage(tmp, s3):
    (tmp / "garbage.pt").write_bytes(b"\x00\x01not a checkpoint" * 50)
    return str(tmp / "garbage.pt")


def _model_truncated(tmp, s3):
    buffer = io.BytesIO()
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=10).state_dict(), buffer)
    (tmp / "truncated.pt").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])
    return str(tmp / "truncated.pt")


def _model_pickled_module(tmp, s3):
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=10), tmp / "whole.pt")
    return str(tmp / "whole.pt")


def _model_wrong_architecture(tmp, s3):
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp / "resnet.pt")
    return str(tmp / "resnet.pt")


def _model_onnx(tmp, s3):
    (tmp / "model.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")  # a truncated ONNX protobuf
    return str(tmp / "model.onnx")


def _model_not_a_state_dict(tmp, s3):
    torch.save({"epoch": 3, "lr": 0.1}, tmp / "meta.pt")
    return str(tmp / "meta.pt")


def _model_s3_missing(tmp, s3):
    return f"s3://{s3[0]}/models/absent.pt"


def _model_s3_pickled(tmp, s3):
    buffer = io.BytesIO()
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=10), buffer)
    return _put(s3, "models/whole.pt", buffer.getvalue())


DATASET_CASES = [
    ("empty-folder", _empty_folder, ["DATASET_PATH"]),
    ("one-class", _one_class, ["DATASET_PATH", "two classes"]),
    ("zero-byte-image", _zero_byte_image, ["DATASET_PATH", "1 image file(s)", "empty.png", "0 bytes"]),
    ("garbage-images", _garbage_images, ["DATASET_PATH", "3 image file(s)", "broken0.jpg"]),
    ("empty-class-folder", _empty_class, ["DATASET_PATH", "dog"]),
    ("missing-path", _missing_path, ["DATASET_PATH", "nowhere"]),
    ("truncated-zip", _truncated_zip, ["DATASET_PATH", "data-broken.zip"]),
    ("coco-category-outside", _coco_bad_category, ["instances_train.json", "category_id 7"]),
    ("coco-zero-byte-image", _coco_zero_byte_image, ["DATASET_PATH", "2.png", "0 bytes"]),
    ("s3-missing-bucket", _missing_bucket, ["DATASET_PATH", "no-such-bucket-vc"]),
    ("s3-missing-object", _missing_object, ["DATASET_PATH", "nothing/here.zip"]),
]

MODEL_CASES = [
    ("missing", _model_missing, ["CUSTOM_MODEL_PATH", "absent.pt"]),
    ("zero-bytes", _model_zero_bytes, ["CUSTOM_MODEL_PATH", "0 bytes"]),
    ("garbage", _model_garbage, ["CUSTOM_MODEL_PATH", "garbage.pt"]),
    ("truncated", _model_truncated, ["CUSTOM_MODEL_PATH", "truncated.pt"]),
    ("pickled-module", _model_pickled_module, ["CUSTOM_MODEL_PATH", "TRUST_PICKLED_MODEL", "safetensors"]),
    ("wrong-architecture", _model_wrong_architecture, ["CUSTOM_MODEL_PATH", "MODEL's architecture"]),
    ("onnx-for-torch-stage", _model_onnx, ["CUSTOM_MODEL_PATH", "ONNX", "OpenVINO"]),
    ("not-a-state-dict", _model_not_a_state_dict, ["CUSTOM_MODEL_PATH", "state dict"]),
    ("s3-missing-object", _model_s3_missing, ["CUSTOM_MODEL_PATH", "models/absent.pt"]),
    ("s3-pickled-module", _model_s3_pickled, ["CUSTOM_MODEL_PATH", "TRUST_PICKLED_MODEL"]),
]


def _one_line(capsys, stage: str, needles: list[str]) -> str:
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.startswith("visioncompress:")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"visioncompress: {stage}: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.mark.parametrize("name, write, needles", DATASET_CASES, ids=[c[0] for c in DATASET_CASES])
def test_bad_dataset_is_one_line(name, write, needles, tmp_path, s3, capsys):
    params = write(tmp_path, s3)
    out = tmp_path / "out" / "dataset"
    with pytest.raises(SystemExit) as info:
        _component("data_prep").python_func(dataset=Dataset(uri=str(out)), insize=16, **params)
    assert info.value.code == 2
    _one_line(capsys, "data_prep", needles)
    assert not out.parent.exists() or not any(out.parent.iterdir())  # no output, not even a partial one


@pytest.mark.parametrize("name, write, needles", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_bad_model_file_is_one_line(name, write, needles, tiny_dataset, tmp_path, s3, capsys):
    path = write(tmp_path, s3)
    out = tmp_path / "out" / "model"
    with pytest.raises(SystemExit) as info:
        _component("finetune").python_func(dataset=Dataset(uri=str(tiny_dataset)), model=Model(uri=str(out)),
                                           metrics=Metrics(uri=str(tmp_path / "out" / "metrics")),
                                           MODEL="mobilenet_v3_small", CUSTOM_MODEL_PATH=path, TRAINING=False)
    assert info.value.code == 2
    _one_line(capsys, "finetune", needles)
    assert not out.exists() and not list(out.parent.glob(".model.partial-*"))


def test_pickled_teacher_names_the_teacher_parameter(tiny_dataset, tmp_path, capsys):
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=10), tmp_path / "teacher.pt")
    out = tmp_path / "out" / "student"
    with pytest.raises(SystemExit) as info:
        _component("distill").python_func(dataset=Dataset(uri=str(tiny_dataset)), distilled_model=Model(uri=str(out)),
                                          metrics=Metrics(uri=str(tmp_path / "m")), MODEL="mobilenet_v3_small",
                                          TEACHER_MODEL="mobilenet_v3_small",
                                          CUSTOM_TEACHER_PATH=str(tmp_path / "teacher.pt"), EPOCHS=1)
    assert info.value.code == 2
    line = _one_line(capsys, "distill", ["CUSTOM_TEACHER_PATH", "TRUST_PICKLED_MODEL"])
    assert "CUSTOM_MODEL_PATH" not in line
    assert not out.exists()


def test_teacher_with_other_classes_is_one_line(tiny_dataset, tmp_path, capsys):
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=4).state_dict(), tmp_path / "teacher.pt")
    with pytest.raises(SystemExit) as info:
        _component("distill").python_func(dataset=Dataset(uri=str(tiny_dataset)),
                                          distilled_model=Model(uri=str(tmp_path / "out")),
                                          metrics=Metrics(uri=str(tmp_path / "m")), MODEL="mobilenet_v3_small",
                                          TEACHER_MODEL="mobilenet_v3_small",
                                          CUSTOM_TEACHER_PATH=str(tmp_path / "teacher.pt"), EPOCHS=1)
    assert info.value.code == 2
    _one_line(capsys, "distill", ["CUSTOM_TEACHER_PATH", "TEACHER_MODEL's architecture"])
    assert not (tmp_path / "out").exists()


def _tamper(model_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "tampered"
    shutil.copytree(model_dir, copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # one byte of one weight
    weights.write_bytes(bytes(data))
    return copy


def test_tampered_artifact_is_refused(tiny_model, tmp_path):
    assert load_torch_module(tiny_model) is not None
    tampered = _tamper(tiny_model, tmp_path)
    with pytest.raises(ArtifactError, match=r"model\.safetensors does not match the sha256"):
        load_torch_module(tampered)
    with pytest.raises(ArtifactError, match=r"model\.safetensors does not match the sha256"):
        read_model_metadata(tampered)


def test_tampered_artifact_stops_the_next_stage(tiny_model, tiny_dataset, tmp_path, capsys):
    tampered = _tamper(tiny_model, tmp_path)
    out = tmp_path / "quantized"
    with pytest.raises(SystemExit) as info:
        _component("quantize_torch").python_func(model=Model(uri=str(tampered)), dataset=Dataset(uri=str(tiny_dataset)),
                                                 quantized_model=Model(uri=str(out)))
    assert info.value.code == 2
    _one_line(capsys, "quantize_torch", ["model.safetensors", "sha256"])
    assert not out.exists()


def test_artifact_with_edited_architecture_is_refused(tiny_model, tmp_path):
    copy = tmp_path / "edited"
    shutil.copytree(tiny_model, copy)
    arch = copy / "model.arch.json"
    arch.write_text(arch.read_text().replace("torch.nn.modules.conv:Conv2d", "os:system", 1))
    with pytest.raises(ArtifactError, match=r"model\.arch\.json does not match the sha256"):
        load_torch_module(copy)
    # Even with the checksum fixed up, a class from outside torch/torchvision/visioncompress is refused.
    import json

    from visioncompress.artifacts import file_sha256

    meta = json.loads((copy / "model.json").read_text())
    meta["files"]["model.arch.json"] = file_sha256(arch)
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="'os:system' is not a torch/torchvision/timm/visioncompress name"):
        load_torch_module(copy)


# ---------------------------------------------------------------- the payload pickle


def test_payload_pickle_is_live(tmp_path):
    """The payload does what it says when unpickled without restrictions (so the tests below can fail)."""
    marker = tmp_path / "ran"
    payload = write_payload(tmp_path / "payload.pt", marker)
    torch.load(payload, weights_only=False)
    assert marker.exists()


def test_payload_pickle_never_runs_locally(tmp_path):
    marker = tmp_path / "ran"
    payload = write_payload(tmp_path / "payload.pt", marker)
    build = lambda: torch.nn.Linear(2, 2)  # noqa: E731
    for parameter in ("CUSTOM_MODEL_PATH", "CUSTOM_TEACHER_PATH"):
        with pytest.raises(ArtifactError) as info:
            load_user_checkpoint(payload, build, parameter=parameter)
        assert parameter in str(info.value) and "TRUST_PICKLED_MODEL" in str(info.value)
    assert not marker.exists()


def test_payload_pickle_never_runs_from_s3(tmp_path, s3):
    marker = tmp_path / "ran"
    uri = _put(s3, "models/payload.pt", write_payload(tmp_path / "payload.pt", marker).read_bytes())
    with pytest.raises(ArtifactError) as info:
        load_user_checkpoint(uri, lambda: torch.nn.Linear(2, 2), parameter="CUSTOM_TEACHER_PATH")
    assert "CUSTOM_TEACHER_PATH" in str(info.value) and "TRUST_PICKLED_MODEL" in str(info.value)
    assert not marker.exists()


def test_payload_in_a_model_artifact_never_runs(tiny_model, tmp_path):
    """An artifact whose weights file was swapped for a pickle (checksum fixed up too) loads no code."""
    import json

    from visioncompress.artifacts import file_sha256

    marker = tmp_path / "ran"
    copy = tmp_path / "swapped"
    shutil.copytree(tiny_model, copy)
    write_payload(copy / "model.safetensors", marker)
    meta = json.loads((copy / "model.json").read_text())
    meta["files"]["model.safetensors"] = file_sha256(copy / "model.safetensors")
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="safetensors"):
        load_torch_module(copy)
    assert not marker.exists()


# ---------------------------------------------------------------- accepted formats


def test_safe_formats_load_into_the_architecture(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).eval()
    x = torch.randn(1, 3, 32, 32)
    from safetensors.torch import save_file

    torch.save(model.state_dict(), tmp_path / "sd.pth")
    torch.save({"state_dict": model.state_dict()}, tmp_path / "wrapped.pt")
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    torch.jit.save(torch.jit.trace(model, x), str(tmp_path / "ts.pt"))
    torch.export.save(torch.export.export(model, (x,)), str(tmp_path / "prog.pt2"))
    expected = model(x)
    for name in ("sd.pth", "wrapped.pt", "w.safetensors", "ts.pt", "prog.pt2"):
        loaded = load_user_checkpoint(tmp_path / name, lambda: torchvision.models.resnet18(num_classes=3))
        torch.testing.assert_close(loaded(x), expected, msg=name)


def test_trusted_pickle_loads_only_when_asked(tmp_path):
    model = torchvision.models.resnet18(num_classes=3).eval()
    torch.save(model, tmp_path / "whole.pt")
    loaded = load_user_checkpoint(tmp_path / "whole.pt", lambda: None, trust_pickled_model=True)
    assert isinstance(loaded, torchvision.models.ResNet)


# ---------------------------------------------------------------- CLI: parameters and job files


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("params, needle", [
    (["-p", "OPTIMIZER=Adamm"], "OPTIMIZER"),
    (["-p", "insize=7"], "insize"),
    (["-p", "TRUST_PICKLED_MODEL=maybe"], "TRUST_PICKLED_MODEL"),
    (["-p", "FINETUNE_EPOCHS"], "--param"),
    (["-p", "DATASET_SOURCE=folder"], "DATASET_PATH"),
], ids=["optimizer", "insize", "trust-not-bool", "param-without-value", "folder-without-path"])
def test_bad_parameter_is_one_line(params, needle, tmp_path, capsys):
    code, out, err = _cli(capsys, "run", "ptq_torch", "--local", "--root", str(tmp_path / "runs"), *params)
    assert code == 2 and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1 and err.startswith("visioncompress: ") and needle in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text, needle", [
    ("ALGORITHM: FXQuant\nTASK: image_classification\nFINETUNE_EPOCH: 2\n", "FINETUNE_EPOCH"),
    ("ALGORITHM: [unclosed\n", "job.yaml"),
    ("- just\n- a list\n", "job.yaml"),
], ids=["unknown-key", "not-yaml", "not-a-mapping"])
def test_bad_job_file_is_one_line(text, needle, tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text(text)
    code, out, err = _cli(capsys, "run", "--config", str(job), "--local", "--root", str(tmp_path / "runs"))
    assert code == 2 and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1 and needle in err
    assert not (tmp_path / "runs").exists()


def test_missing_job_file_is_one_line(tmp_path, capsys):
    code, out, err = _cli(capsys, "run", "--config", str(tmp_path / "absent.yaml"), "--local")
    assert code == 2 and "Traceback" not in out + err and "absent.yaml" in err
    assert len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- whole local runs


def _run_outputs(root: Path) -> list[Path]:
    """Model and dataset artifacts a run left behind (logs are expected)."""
    return [p for p in root.rglob("*") if p.name in ("model.json", "manifest.json")]


def test_local_run_with_a_bad_dataset_is_one_line(tmp_path, capsys):
    images = _folder(tmp_path / "images", {"cat": 3})
    root = tmp_path / "runs"
    code, out, err = _cli(capsys, "run", "ptq_torch", "--local", "--root", str(root), "-p", "DATASET_SOURCE=folder",
                          "-p", f"DATASET_PATH={images}", "-p", "insize=16")
    assert code == 2 and "Traceback" not in out + err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("visioncompress:")]
    assert line.startswith("visioncompress: data_prep: DATASET_PATH=") and "two classes" in line
    log = Path(line.rsplit("(log: ", 1)[1].rstrip(")"))
    assert log.is_file() and "two classes" in log.read_text()
    assert _run_outputs(root) == []


def test_local_run_never_runs_a_payload(tmp_path, capsys):
    marker = tmp_path / "ran"
    payload = write_payload(tmp_path / "payload.pt", marker)
    root = tmp_path / "runs"
    params = [x for k, v in {**TINY, "CUSTOM_MODEL_PATH": str(payload)}.items() for x in ("-p", f"{k}={v}")]
    code, out, err = _cli(capsys, "run", "ptq_torch", "--local", "--root", str(root), *params)
    assert code == 2 and "Traceback" not in out + err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("visioncompress:")]
    assert line.startswith("visioncompress: finetune: CUSTOM_MODEL_PATH=") and "TRUST_PICKLED_MODEL" in line
    assert not marker.exists()
    assert [p.parent.name for p in _run_outputs(root)] == ["dataset"]  # data_prep finished; nothing after it


# ---------------------------------------------------------------- the one line, inside a step


def test_unexpected_error_ends_the_step_with_one_line(tmp_path, capsys, monkeypatch):
    import json

    from visioncompress.kfp_io import FAILURE_FILE_ENV, stage

    record = tmp_path / "failures.jsonl"
    monkeypatch.setenv(FAILURE_FILE_ENV, str(record))
    with pytest.raises(SystemExit) as info:
        with stage("prune"):
            {}["missing"]
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "Traceback (most recent call last):"  # the pod log keeps the stack ...
    assert err[-1] == "visioncompress: prune: unexpected KeyError: 'missing'"  # ... and ends with the line
    assert json.loads(record.read_text()) == {"stage": "prune", "message": "unexpected KeyError: 'missing'",
                                              "exit_code": 1}


def test_local_output_keeps_stacks_in_the_log_only():
    from visioncompress.pipelines.local import _TaskOutput

    plain = ("12:00:01 [visioncompress.prune] pruning\n"
             "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n    boom()\n"
             "ValueError: inner\n\nDuring handling of the above exception, another exception occurred:\n\n"
             "Traceback (most recent call last):\n  File \"y.py\", line 2, in <module>\n"
             "KeyError: 'missing'\n"
             "visioncompress: prune: unexpected KeyError: 'missing'\n")
    task_output = "".join("    " + line + "\n" for line in plain.splitlines())  # as kfp.local prints it
    log, terminal = io.StringIO(), io.StringIO()
    out = _TaskOutput(log, terminal, debug=False)
    for piece in (task_output[:50], task_output[50:]):  # arrives in arbitrary chunks
        out.write(piece)
    assert log.getvalue() == task_output
    shown = [line.strip() for line in terminal.getvalue().splitlines() if line.strip()]
    assert shown == ["12:00:01 [visioncompress.prune] pruning", "visioncompress: prune: unexpected KeyError: 'missing'"]
    debug_terminal = io.StringIO()
    _TaskOutput(io.StringIO(), debug_terminal, debug=True).write(task_output)
    assert debug_terminal.getvalue() == task_output


def test_tampered_dataset_stops_the_next_stage(tiny_dataset, tmp_path, capsys):
    copy = tmp_path / "dataset"
    shutil.copytree(tiny_dataset, copy)
    with np.load(copy / "train.npz") as data:
        images, labels = data["images"].copy(), data["labels"].copy()
    labels[0] = (labels[0] + 1) % 10  # one label changed after the dataset was written
    np.savez(copy / "train.npz", images=images, labels=labels)
    out = tmp_path / "out" / "model"
    with pytest.raises(SystemExit) as info:
        _component("finetune").python_func(dataset=Dataset(uri=str(copy)), model=Model(uri=str(out)),
                                           metrics=Metrics(uri=str(tmp_path / "out" / "metrics")),
                                           MODEL="mobilenet_v3_small", TRAINING=False)
    assert info.value.code == 2
    _one_line(capsys, "finetune", ["train.npz", "sha256"])
    assert not out.exists()


def test_small_images_and_few_calibration_images_are_warnings(tmp_path):
    import logging

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("visioncompress")
    logger.addHandler(handler)
    try:
        root = _folder(tmp_path / "images", {"cat": 5, "dog": 5})  # 20 px images
        manifest = prepare_dataset(DataConfig(source="folder", path=str(root), insize=32, calibration_samples=100,
                                              val_fraction=0.2), tmp_path / "dataset")
    finally:
        logger.removeHandler(handler)
    assert manifest.splits["calibration"] == manifest.splits["train"] == 6  # all of them, as the warning says
    assert any("10 of 10 images are smaller than insize=32" in r for r in records)
    assert any("CALIBRATION_SAMPLES=100 but the training split holds 6 images" in r for r in records)
