"""nyuntam_vision job files: a flat YAML job mapped to one pipeline and its parameters.

Job files look like nyuntam_vision's own (``scripts/quant/classification/*.yaml``)::

    ALGORITHM: ONNXQuant            # or the spec's title: "CPU Post Training Quantization - ONNX"
    ALGO_TYPE: quant
    TASK: image_classification
    MODEL: resnet18
    DATASET_NAME: CIFAR10
    insize: 32
    LEARNING RATE: 0.001
    JOB_PATH: 'ABC/jobs/1'          # nyuntam bookkeeping: ignored, and reported
    quant:
      ONNXQuant:
        quant_format: QuantFormat.QDQ

How a job is read:

* ``ALGORITHM`` (with ``TASK`` and, for FXQuant, the section's ``choice``) picks the pipeline from ``ROUTES``.
* The chosen algorithm's section is flattened over the top level (the section wins, as in nyuntam);
  sections of other algorithms are ignored and reported.
* A key matches a pipeline parameter exactly, then with ' ' and '_' swapped, then ignoring case, then
  through ``ALIASES`` (nyuntam spellings such as ``MODEL_NAME`` or ``LOSS_FN``).
* nyuntam's platform keys and known parameters that this pipeline does not take are ignored and
  reported by name; any other key is a ConfigError with the closest known name.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from visioncompress.errors import ConfigError


@dataclass(frozen=True)
class Route:
    pipeline: str
    algorithms: tuple[str, ...]
    task: str = "image_classification"
    choice: str | None = None  # FXQuant serves PTQ and QAT; its section's `choice` tells them apart


# One line per pipeline: the registry name, then the ALGORITHM spellings (nyuntam class, spec title).
ROUTES: tuple[Route, ...] = (
    Route("ptq_torch", ("FXQuant", "CPU Post Training Quantization - Torch")),
    Route("qat_torch", ("FXQuant", "CPU Quantization Aware Training - Torch"), choice="qat"),
    Route("ptq_openvino", ("NNCF", "NNCFPTQ", "CPU Post Training Quantization - OpenVino")),
    Route("ptq_onnx", ("ONNXQuant", "ONNXPTQ", "CPU Post Training Quantization - ONNX")),
    Route("ptq_tensorrt", ("TensorRT", "TensorRTPTQ", "GPU Post Training Quantization - TensorRT")),
    Route("qat_openvino", ("NNCFQAT", "CPU Quantization Aware Training - OpenVino")),
    Route("qat_tensorrt", ("TensorRTQAT", "GPU Quantization Aware Training - TensorRT")),
    Route("distill", ("KDTransfer", "Knowledge Distillation")),
    Route("prune", ("TorchPrune", "Structured Pruning", "Structured Pruning (Image Classification)")),
    Route("compare", ("compare",)),
    Route("detect_ptq_onnx", ("ONNXQuant", "ONNXPTQ", "CPU Post Training Quantization - ONNX"), task="object_detection"),
    Route("detect_qat_openvino", ("NNCFQAT", "CPU Quantization Aware Training - OpenVino"), task="object_detection"),
    Route("detect_ptq_openvino", ("NNCF", "NNCFPTQ", "CPU Post Training Quantization - OpenVino"),
          task="object_detection"),
    Route("detect_ptq_tensorrt", ("TensorRT", "TensorRTPTQ", "GPU Post Training Quantization - TensorRT"),
          task="object_detection"),
    Route("detect_distill", ("KDTransfer", "MMRazorDistill", "Knowledge Distillation"), task="object_detection"),
    Route("detect_prune", ("MMRazorPrune", "Structured Pruning", "Structured Pruning (Object Detection)"),
          task="object_detection"),
)
TASK_ALIASES = {"detection": "object_detection", "classification": "image_classification"}

ROUTING_KEYS = ("ALGORITHM", "ALGO_TYPE", "TASK")

# nyuntam spelling (normalised) -> our parameter, used only when the pipeline has that parameter.
ALIASES = {
    "modelname": "MODEL", "lossfn": "CRITERION", "optimizername": "OPTIMIZER", "dataurl": "DATASET_PATH",
    "distilllr": "LR", "distillepochs": "EPOCHS", "distillseed": "SEED", "distillweightdecay": "WEIGHT_DECAY",
    "studentmodelpath": "CUSTOM_MODEL_PATH", "scheduler": "LR_SCHEDULER",
    "confidencethreshold": "SCORE_THRESHOLD",
    # TorchPrune's EPOCHS: sparse training with the pruner's regulariser (pipelines without a distillation EPOCHS)
    "epochs": "SPARSITY_EPOCHS",
}
CRITERION_SHORT = {"ce": "CrossEntropyLoss", "crossentropy": "CrossEntropyLoss", "mse": "MSELoss",
                   "l1": "L1Loss", "nll": "NLLLoss"}

# Keys nyuntam's job files carry that have no effect here, with the reason reported to the user.
PLATFORM_KEYS = {
    **dict.fromkeys(("JOB_SERVICE", "JOB_ID", "JOB_PATH", "CACHE_PATH", "DATA_PATH", "LOGGING_PATH", "MODEL_PATH",
                     "USER_FOLDER", "OUTPUT_PATH", "log_name"), "nyuntam workspace bookkeeping; KFP tracks artifacts"),
    **dict.fromkeys(("wandb", "VERSION", "VERBOSE"), "nyuntam logging option"),
    "requires_cuda_transfer": "placement decides the device",
    "NUM_CLASSES": "taken from the dataset's classes",
    "BENCHMARK": "every pipeline benchmarks its models",
    "NIL": "placeholder",
}
# Parameters documented by the nyuntam_vision spec or used in its algorithm sections.
SPEC_KEYS = (
    "insize", "BATCH_SIZE", "TRAINING", "VALIDATE", "VALIDATION_INTERVAL", "CRITERION", "LEARNING_RATE",
    "FINETUNE_EPOCHS", "OPTIMIZER", "PRETRAINED", "choice", "TRANSFORMER", "quant_format", "per_channel",
    "activation_type", "weight_type", "TEACHER_MODEL", "CUSTOM_TEACHER_PATH", "METHOD", "EPOCHS", "LR", "LAMBDA",
    "TEMPERATURE", "SEED", "WEIGHT_DECAY", "PRUNER_NAME", "GROUP_IMPORTANCE", "TARGET_PRUNE_RATE", "BOTTLENECK",
    "PRUNE_NUM_HEADS", "INTERVAL", "NORM_TYPE", "LR_RATIO", "TARGET_FLOP_RATIO", "MODEL", "DATASET_NAME",
    "DATASET_PATH", "CUSTOM_MODEL_PATH", "PLATFORM", "LOSS_FN", "SPARSITY", "ITERATIVE", "MAX_DROP",
    "ITERATIVE_STEPS", "OPTIMIZER_NAME", "DISTILL_SEED", "DISTILL_EPOCHS", "DISTILL_LR", "DISTILL_WEIGHT_DECAY",
    "MODEL_NAME", "DATA_URL",
)


@dataclass
class Job:
    pipeline: str
    params: dict[str, Any]
    ignored: dict[str, str] = field(default_factory=dict)  # job key -> why it has no effect here
    source: str = "<job>"


def _norm(text: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


def _suggest(key: str, candidates: Iterable[str]) -> str:
    by_upper = {c.upper().replace(" ", "_"): c for c in candidates}
    close = difflib.get_close_matches(key.upper().replace(" ", "_"), list(by_upper), n=1, cutoff=0.6)
    return f" (did you mean {by_upper[close[0]]!r}?)" if close else ""


def read_job_file(path: str | os.PathLike) -> dict:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError("--config", str(path), "an existing YAML job file")
    try:
        job = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError("--config", str(path), f"valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(job, dict):
        raise ConfigError("--config", str(path), "a YAML mapping of KEY: value")
    return job


def _route(job: Mapping[str, Any], available: Iterable[str]) -> tuple[str, Route | None]:
    available = sorted(available)
    algorithm = job.get("ALGORITHM")
    if algorithm in available:
        return str(algorithm), None
    task = str(job.get("TASK") or "image_classification")
    task = TASK_ALIASES.get(_norm(task), task)
    named = [r for r in ROUTES if _norm(algorithm) in {_norm(a) for a in r.algorithms} | {_norm(r.pipeline)}]
    if not named:
        names = sorted({a for r in ROUTES for a in r.algorithms} | set(available))
        raise ConfigError("ALGORITHM", algorithm, "a nyuntam_vision algorithm or a pipeline name, one of: "
                          + ", ".join(names) + _suggest(str(algorithm), names))
    routes = [r for r in named if _norm(r.task) == _norm(task)]
    if not routes:
        raise ConfigError("TASK", task, f"a task that ALGORITHM={algorithm!r} supports here: "
                          + ", ".join(sorted({r.task for r in named})))
    if len(routes) > 1:
        choice = _norm(_section_value(job, routes[0], "choice") or job.get("choice") or "")
        routes = [r for r in routes if r.choice and _norm(r.choice) == choice] or \
                 [r for r in routes if r.choice is None]
    route = routes[0]
    if route.pipeline not in available:
        raise ConfigError("ALGORITHM", algorithm, f"an algorithm whose pipeline is installed: it maps to "
                          f"{route.pipeline!r}, which is not among {available}")
    return route.pipeline, route


def _algorithm_names(job: Mapping[str, Any], pipeline: str, route: Route | None) -> set[str]:
    names = {_norm(job.get("ALGORITHM", "")), _norm(pipeline)}
    for r in ROUTES:
        if r.pipeline == pipeline or r is route:
            names |= {_norm(a) for a in r.algorithms}
    return names - {""}


def _section_value(job: Mapping[str, Any], route: Route, key: str) -> Any:
    names = {_norm(a) for a in route.algorithms}
    for group in job.values():
        if isinstance(group, dict):
            for name, section in group.items():
                if isinstance(section, dict) and _norm(name) in names and key in section:
                    return section[key]
    return None


def _flatten(mapping: Mapping[str, Any], origin: str, out: dict[str, tuple[Any, str]]) -> None:
    for key, value in mapping.items():
        if isinstance(value, dict):
            _flatten(value, f"{origin}.{key}", out)
        else:
            out[str(key)] = (value, f"{origin}.{key}")


def _collect(job: Mapping[str, Any], algorithm_names: set[str], ignored: dict[str, str]) -> dict:
    """key -> (value, where it came from), the chosen algorithm's section over the top level."""
    top: dict[str, tuple[Any, str]] = {}
    section: dict[str, tuple[Any, str]] = {}
    for key, value in job.items():
        key = str(key)
        if isinstance(value, dict):
            for name, inner in value.items():
                where = f"{key}.{name}"
                if isinstance(inner, dict) or inner is None:
                    if _norm(name) in algorithm_names:
                        _flatten(inner or {}, where, section)
                    else:
                        ignored[where] = f"section for another algorithm ({name})"
                else:
                    top[str(name)] = (inner, where)
        elif value is None and _norm(key) in {"quant", "quantize", "prune", "distill"}:
            continue  # an empty algorithm-type heading
        else:
            top[key] = (value, key)
    return {**top, **section}


def _match(key: str, parameters: Mapping[str, Any]) -> str | None:
    if key in parameters:
        return key
    underscored = key.strip().replace(" ", "_")
    if underscored in parameters:
        return underscored
    folded = [p for p in parameters if p.lower() == underscored.lower()]
    if len(folded) == 1:
        return folded[0]
    alias = ALIASES.get(_norm(key))
    return alias if alias in parameters else None


def _coerce(value: Any, default: Any) -> Any:
    """YAML reads '1e-3' as text; give numeric parameters numbers when the text is one."""
    if isinstance(value, str) and not isinstance(default, bool) and isinstance(default, (int, float)):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if isinstance(default, int) and number.is_integer() else number
    return value


def _dataset_params(parameters: Mapping[str, Any], params: dict) -> None:
    """nyuntam names a dataset by DATASET_NAME alone; pick our DATASET_SOURCE from it."""
    if "DATASET_SOURCE" not in parameters or "DATASET_SOURCE" in params:
        return
    name = str(params.get("DATASET_NAME") or "").strip()
    path = str(params.get("DATASET_PATH") or "").strip()
    if parameters["DATASET_SOURCE"] == "fashion-mnist-detection":  # a detection pipeline
        params.pop("DATASET_NAME", None)
        if path:
            params["DATASET_SOURCE"] = "coco"
    elif name and _norm(name) == "fashionmnist":
        params["DATASET_SOURCE"] = "fashion-mnist"
        params.pop("DATASET_NAME", None)
    elif name and path and not _is_torchvision_dataset(name):
        params["DATASET_SOURCE"] = "folder"  # a custom dataset: its name is only a label
        params.pop("DATASET_NAME", None)
    elif name:
        params["DATASET_SOURCE"] = "torchvision"
    elif path:
        params["DATASET_SOURCE"] = "folder"


def _device_params(parameters: Mapping[str, Any], params: dict) -> None:
    """nyuntam's DEVICE: 'cuda:0' trains on a GPU: the training steps then go to the GPU pool too."""
    device = str(params.get("DEVICE", "")).strip().lower()
    if device.startswith("cuda") and "TRAIN_ON_GPU" in parameters and "TRAIN_ON_GPU" not in params:
        params["TRAIN_ON_GPU"] = True


def _prune_params(parameters: Mapping[str, Any], params: dict, origins: Mapping[str, str], ignored: dict) -> None:
    """TorchPrune's EPOCHS trains sparsely only with a regularising pruner (nyuntam's train_sparse)."""
    from visioncompress.config.prune import REGULARISING_PRUNERS, PruneConfig

    where = origins.get("SPARSITY_EPOCHS", "")
    if _norm(where.rsplit(".", 1)[-1]) != "epochs":
        return
    pruner = params.get("PRUNER_NAME", parameters.get("PRUNER_NAME"))
    try:
        pruner = PruneConfig(pruner_name=pruner).pruner_name
    except ConfigError:
        return  # the pipeline's own validation names the bad PRUNER_NAME
    if pruner not in REGULARISING_PRUNERS:
        del params["SPARSITY_EPOCHS"]
        ignored[where] = (f"nyuntam trains sparsely for EPOCHS only with {' or '.join(REGULARISING_PRUNERS)} "
                          f"(PRUNER_NAME={pruner})")


def _is_torchvision_dataset(name: str) -> bool:
    import torchvision

    return isinstance(getattr(torchvision.datasets, name, None), type)


def map_job(job: Mapping[str, Any], pipeline: str | None = None, *,
            parameters_of: Callable[[str], Mapping[str, Any]] | None = None,
            available: Iterable[str] | None = None, source: str = "<job>") -> Job:
    """Map a nyuntam_vision job (a parsed YAML mapping) to ``Job(pipeline, params, ignored)``.

    ``pipeline`` (from the command line) may be given instead of, or must agree with, ``ALGORITHM``.
    ``parameters_of(name)`` returns a pipeline's parameters and defaults (the registry by default).
    """
    if parameters_of is None or available is None:
        from visioncompress.config.pipelines import PIPELINES, pipeline_spec

        parameters_of = parameters_of or (lambda name: pipeline_spec(name).defaults_map())
        available = PIPELINES if available is None else available
    available = list(available)
    route = None
    if job.get("ALGORITHM") not in (None, ""):
        chosen, route = _route(job, available)
        if pipeline and pipeline != chosen:
            raise ConfigError("ALGORITHM", job["ALGORITHM"], f"an algorithm of pipeline {pipeline!r} "
                              f"(this job maps to {chosen!r}); drop one of them")
        pipeline = chosen
    if not pipeline:
        raise ConfigError("ALGORITHM", None, "set in the job file (e.g. ONNXQuant), or a PIPELINE argument")
    if pipeline not in available:
        raise ConfigError("pipeline", pipeline, sorted(available))
    parameters = dict(parameters_of(pipeline))

    ignored: dict[str, str] = {}
    found = _collect(job, _algorithm_names(job, pipeline, route), ignored)
    known_elsewhere = set(SPEC_KEYS) | {p for name in available if name != pipeline
                                        for p in _safe_parameters(parameters_of, name)}
    params: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for key, (value, where) in found.items():
        if key in ROUTING_KEYS:
            continue
        target = _match(key, parameters)
        if target is None:
            if key == "choice" and route is not None and route.choice:
                continue  # it chose the pipeline
            reason = PLATFORM_KEYS.get(key)
            if reason is None and (key in known_elsewhere or _match(key, dict.fromkeys(known_elsewhere))):
                reason = f"not a parameter of pipeline {pipeline!r}"
            if reason is None:
                candidates = set(parameters) | set(PLATFORM_KEYS) | set(ROUTING_KEYS)
                raise ConfigError(where, value, f"a parameter of pipeline {pipeline!r}" + _suggest(key, candidates))
            ignored[where] = reason
            continue
        if target in ("PLATFORM", "TEACHER_PLATFORM"):
            from visioncompress.config.train import check_platform

            value = check_platform(where, value)
            from visioncompress.models.zoo import MM_PIPELINES, MM_PLATFORMS

            if value in MM_PLATFORMS and pipeline not in MM_PIPELINES:
                raise ConfigError(where, value, f"torchvision or timm for pipeline {pipeline!r} (OpenMMLab detectors "
                                                f"run in {', '.join(MM_PIPELINES)})")
        if target == "CRITERION" and isinstance(value, str):
            value = CRITERION_SHORT.get(_norm(value), value)
        value = _coerce(value, parameters.get(target))
        same_level = origins.get(target, "").count(".") == where.count(".")
        if target in params and same_level and params[target] != value:
            raise ConfigError(where, value,
                              f"one value for {target} (also set by {origins[target]}={params[target]!r})")
        params[target], origins[target] = value, where
    _dataset_params(parameters, params)
    _device_params(parameters, params)
    _prune_params(parameters, params, origins, ignored)
    return Job(pipeline, params, ignored, source)


def _safe_parameters(parameters_of, name: str) -> Iterable[str]:
    try:
        return list(parameters_of(name))
    except Exception:  # a pipeline that fails to load only loses its names as "known elsewhere"
        return []


def load_job(path: str | os.PathLike, pipeline: str | None = None, **kwargs) -> Job:
    """Read and map a job file; see ``map_job``."""
    return map_job(read_job_file(path), pipeline, source=str(path), **kwargs)
