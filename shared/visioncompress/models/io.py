"""Saving and loading model artifacts (directory + model.json), and user checkpoints."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from visioncompress.artifacts import (
    ModelMetadata, is_model_artifact, read_model_metadata, staged_output, write_model_metadata,
)
from visioncompress.errors import ArtifactError, ConfigError
from visioncompress.log import get_logger
from visioncompress.storage.s3 import is_remote, localized

log = get_logger("models")


def save_torch_model(model, metadata: ModelMetadata, output_dir: str | os.PathLike) -> ModelMetadata:
    """An FP32 (or pruned) nn.Module, loadable with ``torch.load(path, weights_only=False)``."""
    import torch

    metadata = metadata.derive(format="torch-module")
    with staged_output(output_dir) as scratch:
        torch.save(model.eval(), scratch / metadata.file_name)
        write_model_metadata(scratch, metadata)
    return metadata


def save_torchscript(scripted, metadata: ModelMetadata, output_dir: str | os.PathLike) -> ModelMetadata:
    import torch

    metadata = metadata.derive(format="torchscript")
    with staged_output(output_dir) as scratch:
        torch.jit.save(scripted, str(scratch / metadata.file_name))
        write_model_metadata(scratch, metadata)
    return metadata


def model_file(directory: str | os.PathLike) -> Path:
    return Path(directory) / read_model_metadata(directory).file_name


def load_torch_module(directory: str | os.PathLike):
    """The nn.Module inside a torch-module artifact (our own artifacts only)."""
    import torch

    metadata = read_model_metadata(directory)
    if metadata.format != "torch-module":
        raise ArtifactError(
            f"{directory} holds a {metadata.format} model; this stage needs an FP32 torch-module artifact"
        )
    return torch.load(Path(directory) / metadata.file_name, weights_only=False, map_location="cpu").eval()


def load_user_checkpoint(path: str | os.PathLike, architecture_builder) -> Any:
    """A user's checkpoint: a model artifact dir, a state_dict, or a whole pickled module.

    State dicts load with torch's safe ``weights_only=True``; a whole pickled module needs
    ``weights_only=False`` and is accepted only because the user named the file themselves.
    """
    import torch

    if is_remote(str(path)):  # s3:// or minio:// checkpoint file or model-artifact prefix
        with localized(str(path)) as local:
            return load_user_checkpoint(local, architecture_builder)
    path = Path(path)
    if is_model_artifact(path):
        return load_torch_module(path)
    if not path.is_file():
        raise ConfigError("CUSTOM_MODEL_PATH", str(path), "an existing .pt/.pth file or model artifact directory")
    try:
        loaded = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        log.info("%s is a pickled module, loading it with weights_only=False", path)
        try:
            loaded = torch.load(path, weights_only=False, map_location="cpu")
        except Exception as exc:
            raise ArtifactError(f"CUSTOM_MODEL_PATH={str(path)!r} could not be loaded: {exc}") from exc
    except Exception as exc:
        raise ArtifactError(f"CUSTOM_MODEL_PATH={str(path)!r} could not be loaded: {exc}") from exc
    if isinstance(loaded, torch.nn.Module):
        return loaded.eval()
    if isinstance(loaded, dict):
        state = loaded.get("state_dict", loaded.get("model", loaded))
        model = architecture_builder()
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ArtifactError(
                f"CUSTOM_MODEL_PATH={str(path)!r} does not fit MODEL's architecture: {str(exc).splitlines()[0]}"
            ) from exc
        return model.eval()
    raise ArtifactError(f"CUSTOM_MODEL_PATH={str(path)!r} holds a {type(loaded).__name__}, not a model or state_dict")


_TEACHER_NAMES = {"MODEL": "TEACHER_MODEL", "CUSTOM_MODEL_PATH": "CUSTOM_TEACHER_PATH", "uri": "CUSTOM_TEACHER_PATH"}


def load_teacher_checkpoint(path: str, architecture_builder) -> Any:
    """``load_user_checkpoint`` for CUSTOM_TEACHER_PATH: its errors name the teacher's parameters."""
    try:
        return load_user_checkpoint(path, architecture_builder)
    except ConfigError as exc:
        if exc.parameter not in _TEACHER_NAMES:
            raise
        raise ConfigError(_TEACHER_NAMES[exc.parameter], path if exc.parameter != "MODEL" else exc.value,
                          exc.allowed) from exc
    except ArtifactError as exc:
        message = str(exc).replace("CUSTOM_MODEL_PATH", "CUSTOM_TEACHER_PATH").replace("MODEL's", "TEACHER_MODEL's")
        raise type(exc)(message) from exc


def check_checkpoint_path(parameter: str, value: Any) -> None:
    """Before any work: an s3:// / minio:// URI that parses, or a file or model artifact folder that exists here."""
    text = str(value).strip()
    if is_remote(text):
        from visioncompress.storage.s3 import parse_uri

        parse_uri(text, parameter)
        return
    if "://" in text or not (Path(text).is_file() or is_model_artifact(Path(text))):
        raise ConfigError(parameter, value, "an existing .pt/.pth file or model artifact folder, or an "
                          "s3://bucket/key or minio://bucket/key URI")
