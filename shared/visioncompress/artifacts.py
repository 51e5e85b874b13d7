"""The artifact contracts every stage reads and writes (the one place that defines them).

Dataset artifact: a directory holding ``manifest.json`` and one ``<split>.npz`` per split. ``manifest.storage``
says what a split file holds: ``"arrays"`` (``images`` uint8 N x H x W x C_stored at the source's own resolution,
``labels`` int64) or ``"files"`` (``files``: image paths relative to ``source["root"]``, a folder, archive or
``s3://``/``minio://`` URI, and ``labels``); images are resized to ``input_size`` when read (``data.loaders``).
Detection splits also hold their boxes and a ``<split>.json`` (COCO ground truth at ``input_size``).
Model artifact: a directory holding the backend's own model file(s) and ``model.json``
(task, architecture, classes, input size, normalisation, backend, format, precision,
the stage and parameters that produced it, its parent artifact, and the SHA-256 of every
file beside it: a stage refuses an artifact whose files do not match).
Both are written to a temporary sibling and renamed into place, so a killed stage
never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from visioncompress.errors import ArtifactError

DATASET_MANIFEST = "manifest.json"
MODEL_METADATA = "model.json"
SPLITS = ("train", "val", "calibration", "test")

# format -> (backend, file name inside the model directory, the standard call that loads it)
MODEL_FORMATS = {
    # A torch model as tensors (safetensors, no unpickler) + model.arch.json (its module tree as data).
    "torch-module": ("torch", "model.safetensors", "visioncompress.models.load_torch_module(directory)"),
    "torchscript": ("torch", "model.pt", "torch.jit.load(path)"),
    "onnx": ("onnxruntime", "model.onnx", "onnx.load(path) / onnxruntime.InferenceSession(path)"),
    "openvino-ir": ("openvino", "model.xml", "openvino.Core().read_model(path)"),
    "tensorrt-engine": ("tensorrt", "model.engine", "tensorrt.Runtime(logger).deserialize_cuda_engine(bytes)"),
    # An OpenMMLab detector (PLATFORM mmdet / mmyolo) in its wrapper; model.state.pt beside it holds its weights.
    "mm-module": ("torch", "model.pt", "visioncompress.detection.mm.load_model(path)"),
}


@dataclass
class DatasetManifest:
    task: str
    classes: list[str]
    input_size: int
    channels: int
    stored_channels: int
    mean: list[float]
    std: list[float]
    splits: dict[str, int]
    source: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256, filled on write
    storage: str = "arrays"  # "arrays": pixels in <split>.npz; "files": file lists, images read from source.root
    kind: str = "visioncompress.dataset"
    version: int = 2

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class ModelMetadata:
    task: str
    architecture: str
    classes: list[str]
    input_size: int
    channels: int
    mean: list[float]
    std: list[float]
    format: str
    precision: str
    stage: str
    params: dict[str, Any] = field(default_factory=dict)
    parent: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256, filled on write
    kind: str = "visioncompress.model"
    version: int = 2

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def backend(self) -> str:
        return MODEL_FORMATS[self.format][0]

    @property
    def file_name(self) -> str:
        return MODEL_FORMATS[self.format][1]

    @property
    def load_call(self) -> str:
        engine = (self.params or {}).get("QUANTIZED_ENGINE") if self.precision == "int8" else None
        if self.format == "torchscript" and engine not in (None, "auto"):
            return f"torch.backends.quantized.engine = {engine!r}; {MODEL_FORMATS[self.format][2]}"
        return MODEL_FORMATS[self.format][2]

    def derive(self, **changes: Any) -> "ModelMetadata":
        data = asdict(self)
        data["files"] = {}  # a derived artifact's files are hashed when it is written
        data.update(changes)
        return ModelMetadata(**data)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def staged_output(final_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a scratch directory that becomes ``final_dir`` only if the block succeeds."""
    final = Path(final_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final) if final.is_dir() else final.unlink()
    os.replace(scratch, final)


def write_dataset_manifest(directory: Path, manifest: DatasetManifest) -> None:
    """Write manifest.json last: it records the sha256 of every file already in ``directory``."""
    manifest.files = _artifact_files(Path(directory), DATASET_MANIFEST)
    _write_json(Path(directory) / DATASET_MANIFEST, asdict(manifest))


def read_dataset_manifest(directory: str | os.PathLike, *, verify: bool = True) -> DatasetManifest:
    path = Path(directory) / DATASET_MANIFEST
    data = _read_kind(path, "visioncompress.dataset", "dataset")
    missing = [s for s in SPLITS if not (Path(directory) / f"{s}.npz").is_file()]
    if missing:
        raise ArtifactError(f"dataset artifact {directory} is incomplete: missing split file(s) {missing}")
    unknown = sorted(set(data) - set(DatasetManifest.__dataclass_fields__))
    if unknown:
        raise ArtifactError(f"{path}: unknown field(s) {unknown}")
    try:
        manifest = DatasetManifest(**data)
    except TypeError as exc:
        raise ArtifactError(f"{path} is incomplete: {exc}") from exc
    if manifest.storage not in ("arrays", "files"):
        raise ArtifactError(f"{path}: storage {manifest.storage!r} is not one of 'arrays', 'files'")
    if manifest.storage == "files" and not manifest.source.get("root"):
        raise ArtifactError(f"{path}: a 'files' dataset must name its source root")
    if verify:
        _verify_files(directory, manifest.files, DATASET_MANIFEST, manifest.version, "dataset")
    return manifest


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _artifact_files(directory: Path, own: str = MODEL_METADATA) -> dict[str, str]:
    """sha256 of every file in the artifact directory except its own model.json / manifest.json."""
    return {path.relative_to(directory).as_posix(): file_sha256(path)
            for path in sorted(directory.rglob("*")) if path.is_file() and path.relative_to(directory).as_posix() != own}


def write_model_metadata(directory: Path, metadata: ModelMetadata) -> ModelMetadata:
    """Write model.json last: it records the sha256 of every file already in ``directory``."""
    directory = Path(directory)
    if metadata.format not in MODEL_FORMATS:
        raise ArtifactError(f"unknown model format {metadata.format!r}; known: {sorted(MODEL_FORMATS)}")
    if not (directory / metadata.file_name).is_file():
        raise ArtifactError(f"model file {metadata.file_name} was not written to {directory}")
    metadata.files = _artifact_files(directory)
    _write_json(directory / MODEL_METADATA, asdict(metadata))
    return metadata


def _verify_files(directory, files: dict[str, str], own: str, version: int, what: str) -> None:
    directory = Path(directory)
    if not files:
        raise ArtifactError(f"{what} artifact {directory} records no file checksums ({own} version {version}); "
                            "re-run the stage that wrote it")
    for relative, expected in sorted(files.items()):
        path = directory / relative
        if ".." in Path(relative).parts or not path.is_file():
            raise ArtifactError(f"{what} artifact {directory} is missing {relative}")
        if file_sha256(path) != expected:
            raise ArtifactError(f"{what} artifact {directory}: {relative} does not match the sha256 in {own} "
                                "(changed after it was written); refusing to load it")


def verify_model_files(directory: str | os.PathLike, metadata: ModelMetadata) -> None:
    """Refuse an artifact whose files were changed, removed or never recorded after it was written."""
    if metadata.files and metadata.file_name not in metadata.files:
        raise ArtifactError(f"model artifact {directory}: model.json records no checksum for {metadata.file_name}")
    _verify_files(directory, metadata.files, MODEL_METADATA, metadata.version, "model")


def read_model_metadata(directory: str | os.PathLike, *, verify: bool = True) -> ModelMetadata:
    data = _read_kind(Path(directory) / MODEL_METADATA, "visioncompress.model", "model")
    known = set(ModelMetadata.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ArtifactError(f"{Path(directory) / MODEL_METADATA}: unknown field(s) {unknown}")
    try:
        metadata = ModelMetadata(**data)
    except TypeError as exc:
        raise ArtifactError(f"{Path(directory) / MODEL_METADATA} is incomplete: {exc}") from exc
    if metadata.format not in MODEL_FORMATS:
        raise ArtifactError(f"{directory}: unknown model format {metadata.format!r}")
    if not (Path(directory) / metadata.file_name).is_file():
        raise ArtifactError(f"model artifact {directory} has no {metadata.file_name}")
    if verify:
        verify_model_files(directory, metadata)
    return metadata


def is_model_artifact(path: str | os.PathLike) -> bool:
    return (Path(path) / MODEL_METADATA).is_file()


def _read_kind(path: Path, kind: str, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ArtifactError(f"{path.parent} is not a {what} artifact: {path.name} is missing")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("kind") != kind:
        found = data.get("kind") if isinstance(data, dict) else type(data).__name__
        raise ArtifactError(f"{path} describes {found!r}, expected {kind!r}")
    return data
