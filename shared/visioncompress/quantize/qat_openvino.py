"""OpenVINO INT8 through NNCF quantization-aware training of the torch model.

The NNCF 3.4 flow: ``nncf.quantize(torch_model, calibration)`` returns a copy of the model with
quantizers hooked in (held in its ``__nncf_hooks`` submodule) and ranges set from the calibration
split; that model trains like any torch module (weights and quantizer scales both learn);
``ov.convert_model`` then turns the quantizers into FakeQuantize operations, which OpenVINO's CPU
plugin runs as INT8. The result loads with ``openvino.Core().read_model(path)``.

Checkpoints: the quantized model's ``state_dict`` holds weights and quantizer parameters, but a
fresh FP32 model has no quantizers to load them into. So next to the shared loop's checkpoint this
stage keeps NNCF's quantizer layout (``nncf.torch.get_config``, JSON); a resumed run rebuilds the
quantizers from it with ``nncf.torch.load_from_config`` instead of calibrating again, and the loop
then loads the state_dict as usual (also for its best-validation state).

Quantize kernels: NNCF's torch quantizers run either a C++ extension that NNCF compiles on first
use (g++ and ninja needed; 2.5 minutes on a loaded 2-core machine, past NNCF's default 60 s load
limit) or NNCF's torch-native reference functions (the ones it falls back to when that build
fails), which NNCF wraps in torch.compile. Measured on this project's 2-core CPUs: the reference
kernels alone are 1.5-2x faster than the extension's, and whole resnet18 training steps take the
same time either way, so the CPU flow does not need the extension: the reference kernels are the
default and nothing is built. ``VC_NNCF_TORCH_KERNELS=extension`` builds and uses the extension
(see ``build_nncf_torch_extension``).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

from visioncompress.artifacts import ModelMetadata, staged_output, write_model_metadata
from visioncompress.config import TrainConfig
from visioncompress.config._fields import check_choice
from visioncompress.config.qat import OpenVinoQATConfig
from visioncompress.errors import MissingDependencyError
from visioncompress.log import get_logger
from visioncompress.quantize._common import calibration_arrays, derived_metadata, load_inputs
from visioncompress.quantize.openvino import convert_to_openvino
from visioncompress.quantize.qat_torch import qat_metrics, qat_params, qat_task, qat_train_config
from visioncompress.train.engine import fit

log = get_logger("quantize.qat_openvino")

KERNELS_ENV = "VC_NNCF_TORCH_KERNELS"
KERNEL_CHOICES = ("reference", "extension")
STAGE = "qat_openvino"
# NNCF's torch backend costs about a second per calibration step whatever the batch size, so
# calibrating one image at a time (as the OpenVINO PTQ stage does) would take minutes.
CALIBRATION_BATCH = 32


def default_extensions_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "visioncompress" / "torch_extensions"


def build_nncf_torch_extension() -> Path:
    """Compile (or load the cached) NNCF CPU quantization extension; returns its build directory.

    Runs the build directly rather than through NNCF's lazy loader, whose thread gives up after
    ``NNCF_EXTENSION_LOAD_TIMEOUT`` seconds (default 60) while the compiler keeps running. Parallel
    processes are safe: torch 2.14's cpp_extension holds an OS-level file lock on the build
    directory while compiling (released by the kernel if the builder dies, so no stale lock file
    blocks later runs), and a waiting process simply loads the finished library.
    """
    from torch.utils.cpp_extension import is_ninja_available

    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(default_extensions_dir()))
    compiler = os.environ.get("CXX", "c++")
    missing = []
    if shutil.which(compiler) is None:
        missing.append(f"a C++ compiler ({compiler!r}, from $CXX or c++; e.g. apt-get install g++)")
    if not is_ninja_available():
        missing.append("ninja on PATH (apt-get install ninja-build, or pip install ninja)")
    if missing:
        raise MissingDependencyError(f"{KERNELS_ENV}=extension needs " + " and ".join(missing)
                                     + f"; or unset {KERNELS_ENV} to use NNCF's torch-native kernels")
    from nncf.torch.quantization.extensions import QuantizedFunctionsCPU, QuantizedFunctionsCPULoader
    from nncf.torch.quantization.reference import ReferenceQuantizedFunctions

    build_dir = Path(QuantizedFunctionsCPULoader.get_build_dir())
    log.info("building/loading NNCF's CPU quantization extension in %s", build_dir)
    loaded = QuantizedFunctionsCPULoader.load()
    # NNCF's loader swallows build errors and returns its reference functions instead.
    if loaded is ReferenceQuantizedFunctions:
        raise MissingDependencyError(f"NNCF could not compile its CPU extension in {build_dir} (its warning above "
                                     f"says why); unset {KERNELS_ENV} to use NNCF's torch-native kernels")
    QuantizedFunctionsCPU._loaded_namespace = loaded
    return build_dir


def use_nncf_torch_kernels(kind: str | None = None) -> str:
    """Choose the kernels NNCF's torch quantizers run (process-wide); ``kind`` defaults to $VC_NNCF_TORCH_KERNELS."""
    kind = check_choice(KERNELS_ENV, kind or os.environ.get(KERNELS_ENV) or "reference", KERNEL_CHOICES)
    if kind == "extension":
        build_nncf_torch_extension()
        return kind
    from nncf.torch.quantization.extensions import QuantizedFunctionsCPU
    from nncf.torch.quantization.reference import ReferenceQuantizedFunctions

    if not hasattr(QuantizedFunctionsCPU, "_loaded_namespace"):
        raise MissingDependencyError(f"this NNCF version cannot be switched to its reference kernels; set "
                                     f"{KERNELS_ENV}=extension")
    # NNCF has no public switch; this is the same object its loader falls back to when a build fails.
    QuantizedFunctionsCPU._loaded_namespace = ReferenceQuantizedFunctions
    return kind


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _quantized_model(model, dataset, config: OpenVinoQATConfig, checkpoint_dir: Path | None):
    """The FP32 model with NNCF quantizers: restored from the checkpoint's layout, or calibrated."""
    import nncf
    import nncf.torch
    import torch

    layout = checkpoint_dir / f"{STAGE}-nncf.json" if checkpoint_dir else None
    if layout and layout.is_file() and (checkpoint_dir / f"{STAGE}-last.pt").is_file():
        log.info("restoring NNCF quantizers from %s (weights and ranges come from the checkpoint)", layout)
        return nncf.torch.load_from_config(copy.deepcopy(model), json.loads(layout.read_text()))
    batches = [torch.from_numpy(x) for x in calibration_arrays(dataset, CALIBRATION_BATCH, limit=config.subset_size)]
    log.info("NNCF calibration on %d images (TRANSFORMER=%s)", sum(len(b) for b in batches), config.transformer)
    quantized = nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches),
                              model_type=nncf.ModelType.TRANSFORMER if config.transformer else None)
    if layout:
        _write_json(layout, nncf.torch.get_config(quantized))
    return quantized


def qat_openvino(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, output_dir: str | os.PathLike,
                 config: OpenVinoQATConfig, train_config: TrainConfig, *,
                 checkpoint_dir: str | os.PathLike | None = None, teacher=None, distill_config=None) -> ModelMetadata:
    """``teacher`` (with ``distill_config``): train against the teacher's soft targets too (``qat_task``)."""
    import openvino as ov
    import torch

    kernels = use_nncf_torch_kernels()
    model, parent, dataset = load_inputs(model_dir, dataset_dir)
    example = torch.from_numpy(dataset.example_input(1))
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
    quantized = _quantized_model(model, dataset, config, checkpoint_dir)
    log.info("NNCF QAT (%s kernels): %d epoch(s) at learning rate %g, batch %d", kernels, config.qat_epochs,
             config.qat_learning_rate, config.batch_size)
    qat_config = qat_train_config(train_config, config)
    task, companions = qat_task(dataset, qat_config.criterion, teacher, distill_config)
    result = fit(quantized, task, qat_config, epochs=config.qat_epochs, learning_rate=config.qat_learning_rate,
                 companions=companions, checkpoint_dir=checkpoint_dir, name=STAGE)
    ov_model = convert_to_openvino(quantized, example)
    metadata = derived_metadata(parent, model_dir, stage=STAGE, precision="int8", config=config, fmt="openvino-ir")
    metadata = metadata.derive(params=qat_params(train_config, config), metrics=qat_metrics(result))
    with staged_output(output_dir) as scratch:
        ov.save_model(ov_model, str(scratch / metadata.file_name), compress_to_fp16=False)
        write_model_metadata(scratch, metadata)
    log.info("QAT INT8 OpenVINO IR written to %s (val top-1 %s; load with %s)", output_dir, result.best_val_top1,
             metadata.load_call)
    return metadata


__all__ = ["build_nncf_torch_extension", "qat_openvino", "use_nncf_torch_kernels"]
