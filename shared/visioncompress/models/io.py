"""Saving and loading model artifacts (directory + model.json), and user checkpoints.

Nothing here unpickles a file by default. Stage artifacts hold their tensors in safetensors and
their module tree as JSON (``safe_module``); a user's checkpoint may be a state dict (read with
``torch.load(weights_only=True)``), safetensors, TorchScript, a ``torch.export`` program (.pt2) or a
model artifact directory. A whole pickled module runs code from the file when it is loaded, so it
is refused unless the run sets TRUST_PICKLED_MODEL=True.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

from visioncompress.artifacts import (
    ModelMetadata, is_model_artifact, read_model_metadata, staged_output, write_model_metadata,
)
from visioncompress.errors import ArtifactError, ConfigError
from visioncompress.log import get_logger
from visioncompress.models.safe_module import load_module, save_module
from visioncompress.storage.s3 import StorageError, is_remote, localized

log = get_logger("models")

SAFE_FORMATS = ("a state dict saved with torch.save(model.state_dict(), path) (.pt/.pth)", "safetensors",
                "TorchScript (torch.jit.save)", "a torch.export program (.pt2)", "a visioncompress model artifact")
ONNX_BACKENDS = "ONNX Runtime (ptq_onnx), OpenVINO (ptq_openvino) and TensorRT PTQ (ptq_tensorrt)"


def save_torch_model(model, metadata: ModelMetadata, output_dir: str | os.PathLike) -> ModelMetadata:
    """An FP32 (or pruned / distilled) nn.Module: tensors in model.safetensors, its tree in model.arch.json."""
    metadata = metadata.derive(format="torch-module")
    with staged_output(output_dir) as scratch:
        save_module(model.eval(), scratch, "model")
        metadata = write_model_metadata(scratch, metadata)
    return metadata


def save_torchscript(scripted, metadata: ModelMetadata, output_dir: str | os.PathLike) -> ModelMetadata:
    import torch

    metadata = metadata.derive(format="torchscript")
    with staged_output(output_dir) as scratch:
        torch.jit.save(scripted, str(scratch / metadata.file_name))
        metadata = write_model_metadata(scratch, metadata)
    return metadata


def model_file(directory: str | os.PathLike) -> Path:
    return Path(directory) / read_model_metadata(directory).file_name


def load_torch_module(directory: str | os.PathLike):
    """The nn.Module inside a torch-module artifact (checksums verified; no unpickler)."""
    metadata = read_model_metadata(directory)
    if metadata.format != "torch-module":
        raise ArtifactError(
            f"{directory} holds a {metadata.format} model; this stage needs an FP32 torch-module artifact"
        )
    return load_module(directory, "model").eval()


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def sniff_format(path: Path) -> str:
    """torch-zip, torchscript, torch-export, safetensors, onnx, pickle, or unknown (from the bytes)."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if head.startswith(b"PK\x03\x04"):
        names = _zip_names(path)
        if any(n.endswith("archive_format") for n in names) or any("/models/" in n and n.endswith(".json")
                                                                  for n in names):
            return "torch-export"
        if any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names):
            return "torchscript"
        return "torch-zip"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size:
        return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    if path.suffix.lower() == ".safetensors":
        return "safetensors"
    if path.suffix.lower() in (".pt2",):
        return "torch-export"
    return "unknown"


def _export_state_dict(path: Path, where: str, trust_pickled_model: bool) -> dict:
    """The weights of a torch.export archive (.pt2), read from its raw tensor records.

    ``torch.export.load`` unpickles parts of the archive (pickled weights, custom objects, sample
    inputs), so it is not used: the weights' JSON config and raw bytes are read directly, and an
    archive that holds pickled entries is refused like any pickle.
    """
    import json

    import torch
    from torch._export.serde.schema import ScalarType
    from torch._export.serde.serialize import _SERIALIZE_TO_TORCH_DTYPE

    def number(entry):
        if not isinstance(entry, dict) or "as_int" not in entry:
            raise ArtifactError(f"{where}: a torch.export weight has a symbolic shape; expected a concrete one")
        return int(entry["as_int"])

    state: dict = {}
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            # Parameters and persistent buffers only: lifted constants are not part of a state dict.
            configs = [n for n in names if n.endswith("_weights_config.json")]
            if not configs:
                raise ArtifactError(f"{where} is not a torch.export archive this version can read "
                                    "(no weights config; a legacy archive would need unpickling)")
            for config_name in configs:
                base = config_name.rsplit("/", 1)[0]
                config = json.loads(archive.read(config_name)).get("config", {})
                for fqn, meta in config.items():
                    if meta.get("use_pickle") or not str(meta.get("path_name", "")).startswith(("weight_", "tensor_")):
                        if trust_pickled_model:
                            log.warning("%s: TRUST_PICKLED_MODEL=True, loading with torch.export.load", where)
                            program = torch.export.load(str(path))
                            return dict(program.state_dict)
                        raise ArtifactError(f"{where} holds pickled entries ({fqn}); loading them would run code "
                                            "from that file. Export the model again with plain tensor weights, or "
                                            "set TRUST_PICKLED_MODEL=True if you trust the file's author")
                    tensor_meta = meta["tensor_meta"]
                    dtype = _SERIALIZE_TO_TORCH_DTYPE[ScalarType(int(tensor_meta["dtype"]))]
                    raw = archive.read(f"{base}/{meta['path_name']}")
                    flat = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.zeros(0, dtype=dtype)
                    sizes = [number(e) for e in tensor_meta["sizes"]]
                    strides = [number(e) for e in tensor_meta["strides"]]
                    offset = number(tensor_meta.get("storage_offset", {"as_int": 0}))
                    state[fqn] = (torch.as_strided(flat, sizes, strides, offset) if raw
                                  else torch.zeros(sizes, dtype=dtype)).clone()
    except ArtifactError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, RuntimeError, OSError) as exc:
        raise ArtifactError(f"{where} could not be read as a torch.export program ({type(exc).__name__}: "
                            f"{exc})") from exc
    return state


def _load_state(path: Path, kind: str, parameter: str, trust_pickled_model: bool):
    """A state dict (or, with trust, a module) from a user's file, without running code from it."""
    import torch

    where = f"{parameter}={str(path)!r}"
    if kind == "onnx":
        raise ArtifactError(f"{where} is an ONNX model; this stage starts from a torch model. ONNX models are "
                            f"accepted by the backends that start from ONNX: {ONNX_BACKENDS}; here give "
                            f"{', or '.join(SAFE_FORMATS)}")
    if kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ArtifactError(f"{where} could not be read as safetensors: {exc}") from exc
    if kind == "torchscript":
        try:
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        except Exception as exc:  # noqa: BLE001 - a broken archive may fail anywhere in the loader
            raise ArtifactError(f"{where} could not be loaded as TorchScript: {str(exc).splitlines()[0]}") from exc
    if kind == "torch-export":
        return _export_state_dict(path, where, trust_pickled_model)
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():  # not a refused global: the bytes are not a checkpoint
            raise ArtifactError(f"{where} could not be loaded ({str(exc).splitlines()[0]}); expected "
                                f"{', or '.join(SAFE_FORMATS)}") from exc
        if not trust_pickled_model:
            raise ArtifactError(
                f"{where} is a pickled Python object (a whole module?), and loading it would run code from "
                f"that file; it was not loaded. Give {', or '.join(SAFE_FORMATS)} (e.g. "
                f"torch.save(model.state_dict(), path)), or set TRUST_PICKLED_MODEL=True if you trust the "
                f"file's author") from None
        log.warning("%s: TRUST_PICKLED_MODEL=True, unpickling the file (this runs code from it)", where)
        try:
            return torch.load(path, weights_only=False, map_location="cpu")
        except Exception as inner:  # noqa: BLE001
            raise ArtifactError(f"{where} could not be loaded: {str(inner).splitlines()[0]}") from inner
    except Exception as exc:  # noqa: BLE001 - truncated zips, garbage bytes, ...
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ArtifactError(f"{where} could not be loaded ({first}); expected {', or '.join(SAFE_FORMATS)}") \
            from exc


# Layers whose shape follows the number of classes in torchvision's detectors.
_CLASS_HEAD_NAMES = ("cls_logits", "cls_score", "bbox_pred", "classification_head")


def class_head_modules(model) -> set[str]:
    """Names of the modules whose output size depends on the number of classes: the last module holding
    parameters (a classifier's final layer) and the class-dependent layers of detection heads."""
    with_params = [name for name, m in model.named_modules() if name and any(True for _ in m.parameters(recurse=False))]
    heads = {name for name in with_params if any(part in _CLASS_HEAD_NAMES for part in name.split("."))}
    if with_params and not heads:
        heads.add(with_params[-1])
    return heads


def load_fitting_state(model, state: dict, *, where: str, arch_parameter: str = "MODEL",
                       reinit_head: bool = True) -> list[str]:
    """Load ``state`` into ``model``; a class-dependent head of another size is re-initialised.

    The usual case is an ImageNet checkpoint (1000 classes) for a 10-class dataset: every tensor that
    fits loads, the head keeps its fresh initialisation, and the re-initialised layers are logged and
    returned. Any other difference (a missing or extra tensor, a mismatched shape outside the head)
    is an error naming the first such layer."""
    own = model.state_dict()
    head = class_head_modules(model)

    def in_head(key: str) -> bool:
        module = key.rsplit(".", 1)[0]
        return any(module == h or module.startswith(h + ".") for h in head)

    mismatched = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    problems = ([f"{k}: the file has shape {tuple(state[k].shape)}, {arch_parameter} has {tuple(own[k].shape)}"
                 + ("" if reinit_head or not in_head(k) else " (the head: a teacher must be sized for this "
                    "dataset's classes)")
                 for k in mismatched if not (reinit_head and in_head(k))]
                + [f"{k}: missing from the file" for k in missing if not (reinit_head and in_head(k))]
                + [f"{k}: in the file but not in {arch_parameter}" for k in unexpected])
    if problems:
        raise ArtifactError(f"{where} does not fit {arch_parameter}'s architecture: {problems[0]}"
                            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    fresh = mismatched + missing
    reinitialised = sorted({k.rsplit(".", 1)[0] for k in fresh})
    fitting = {k: v for k, v in state.items() if k not in mismatched}
    model.load_state_dict(fitting, strict=not fresh)
    if reinitialised:
        log.warning("%s: loaded %d of %d tensors; re-initialised the head for this dataset's classes: %s "
                    "(the file's head was sized for another number of classes, or absent)", where, len(fitting), len(own),
                    ", ".join(reinitialised))
    return reinitialised


def load_user_checkpoint(path: str | os.PathLike, architecture_builder, *, parameter: str = "CUSTOM_MODEL_PATH",
                         trust_pickled_model: bool = False) -> Any:
    """A user's model: an artifact dir, a state dict, safetensors, TorchScript or a torch.export program.

    Weights that are not a whole module are loaded into ``architecture_builder()`` (the MODEL /
    TEACHER_MODEL architecture). A whole pickled module is refused unless ``trust_pickled_model``.
    ``parameter`` names the run parameter in every message (CUSTOM_MODEL_PATH or CUSTOM_TEACHER_PATH).
    """
    import torch

    arch_parameter = "TEACHER_MODEL" if parameter == "CUSTOM_TEACHER_PATH" else "MODEL"
    if is_remote(str(path)):  # s3:// or minio:// checkpoint file or model-artifact prefix
        try:
            with localized(str(path)) as local:
                return load_user_checkpoint(local, architecture_builder, parameter=parameter,
                                            trust_pickled_model=trust_pickled_model)
        except ConfigError as exc:
            if exc.parameter in ("uri", "CUSTOM_MODEL_PATH") and parameter != exc.parameter:
                raise ConfigError(parameter, exc.value, exc.allowed) from exc
            raise
        except StorageError as exc:
            raise type(exc)(f"{parameter}={str(path)!r}: {exc}") from exc
    path = Path(path)
    if is_model_artifact(path):
        return load_torch_module(path)
    if not path.is_file():
        raise ConfigError(parameter, str(path), "an existing model file (" + ", ".join(SAFE_FORMATS) + ")")
    if path.stat().st_size == 0:
        raise ArtifactError(f"{parameter}={str(path)!r} is an empty file (0 bytes)")
    loaded = _load_state(path, sniff_format(path), parameter, trust_pickled_model)
    if isinstance(loaded, torch.nn.Module):
        return loaded.eval()
    if isinstance(loaded, dict):
        state = loaded
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
        if not state or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
            raise ArtifactError(f"{parameter}={str(path)!r} holds a dict that is not a state dict of tensors "
                                "(nor one under 'state_dict' or 'model')")
        model = architecture_builder()
        # a student's head is re-initialised for this dataset; a teacher's must already fit it
        load_fitting_state(model, state, where=f"{parameter}={str(path)!r}", arch_parameter=arch_parameter,
                           reinit_head=parameter != "CUSTOM_TEACHER_PATH")
        return model.eval()
    raise ArtifactError(f"{parameter}={str(path)!r} holds a {type(loaded).__name__}, not a model or state_dict")


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
