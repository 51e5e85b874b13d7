"""Every pipeline stage as data: its artifacts, the parameters it reads, and the one library call it makes.

A KFP component (``components/<stage>/component.py``) is generated from a ``Stage``: its inputs are the
stage's artifacts plus every parameter of the configs it uses (types, defaults and descriptions from
``visioncompress.config.catalog``), and its body is ``run_stage("<stage>", locals())``. Nothing here
imports KFP: artifacts are read through ``.path`` / ``.uri`` / ``.metadata`` / ``.log_metric`` only, so
the same call runs from a component, a test or a notebook.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from visioncompress.config import (
    BenchmarkConfig, DataConfig, DetectionPostConfig, DistillConfig, GroupFisherConfig, LadderConfig, ModelConfig, OnnxPTQConfig, OpenVinoPTQConfig,
    OpenVinoQATConfig, PruneConfig, PublishConfig, RuntimeConfig, StorageConfig, TensorRTConfig, TensorRTQATConfig, TorchPTQConfig,
    TorchQATConfig, TrainConfig, config_from,
)
from visioncompress.config.catalog import PARAMS, Param

# What QAT and GroupFisher take from the common training table (they have their own epochs and LR).
# The engine's parameters reach every training stage.
_ENGINE = ("DEVICE", "AMP", "NUM_PROCESSES", "WORKERS", "PIN_MEM", "LR_SCHEDULER", "LR_WARMUP_EPOCHS",
           "CHECKPOINT_URI", "TRAIN_ON_GPU", "NUM_NODES", "GPUS_PER_NODE")
_QAT_TRAIN = ("VALIDATE", "VALIDATION_INTERVAL", "CRITERION", "OPTIMIZER", "SEED") + _ENGINE
_GROUP_FISHER_TRAIN = ("VALIDATE", "VALIDATION_INTERVAL", "LEARNING_RATE", "OPTIMIZER", "BATCH_SIZE", "SEED") + _ENGINE
PUBLISHABLE = ("torch_ptq", "onnx_ptq", "openvino_ptq", "tensorrt_ptq", "torch_qat", "openvino_qat", "distilled",
               "pruned", "ptq_ladder")


@dataclass(frozen=True)
class Stage:
    name: str
    doc: str
    run: Callable[[Mapping[str, Any], dict], None]
    inputs: tuple[tuple[str, str], ...] = ()  # (artifact name, KFP artifact type name)
    outputs: tuple[tuple[str, str], ...] = ()
    optional_inputs: tuple[tuple[str, str], ...] = ()
    # configs whose parameters the stage reads; (Config, ("NAME", ...)) reads only those names of it
    uses: tuple = ()
    extra: tuple[str, ...] = ()  # internal wiring parameters (catalog entries with internal=True)
    image: str = "cpu"  # cpu or gpu
    kind: str = "compute"  # data, train, compute, measure, report, publish, gpu: placement/retry/cache policy

    def config_uses(self) -> list[tuple[type, tuple[str, ...] | None]]:
        return [(u, None) if isinstance(u, type) else (u[0], tuple(u[1])) for u in self.uses]

    def parameters(self) -> list[Param]:
        """The stage's parameters, each once, in declaration order."""
        names: list[str] = []
        for cls, subset in self.config_uses():
            for f in dataclasses.fields(cls):
                spec = f.metadata["spec"]
                if (subset is None or spec in subset) and spec not in names:
                    names.append(spec)
        names += [n for n in self.extra if n not in names]
        return [PARAMS[n] for n in names]

    def configs(self, params: Mapping[str, Any]) -> dict[type, Any]:
        built = {}
        for cls, subset in self.config_uses():
            given = {k: v for k, v in params.items() if subset is None or k in subset}
            built[cls] = config_from(cls, given)
        return built


# ---- the bodies: each turns artifacts + configs into one library call ----------------------------------

def _checkpoints(a, out):
    """The training stage's local checkpoint folder (durable when its location is object storage)."""
    from visioncompress.train.checkpoint import durable_checkpoints

    return durable_checkpoints(a.get("_checkpoints") or out.path + ".checkpoints")


def _data_prep(a, c):
    from visioncompress.data import prepare_dataset
    from visioncompress.kfp_io import describe_dataset

    describe_dataset(a["dataset"], prepare_dataset(c[DataConfig], a["dataset"].path))


def _finetune(a, c):
    from visioncompress.kfp_io import describe_model, log_training
    from visioncompress.train import finetune

    out = a["model"]
    with _checkpoints(a, out) as checkpoints:
        result = finetune(a["dataset"].path, out.path, c[ModelConfig], c[TrainConfig], checkpoint_dir=checkpoints)
    describe_model(out, result)
    log_training(a["metrics"], result.metrics)


def _quantize(a, c, config_class):
    from visioncompress.kfp_io import describe_model
    from visioncompress.quantize import quantize

    out = a["quantized_model"]
    describe_model(out, quantize(a["model"].path, a["dataset"].path, out.path, c[config_class],
                                 post=c.get(DetectionPostConfig)))


def _qat(a, c, config_class):
    from visioncompress.kfp_io import describe_model, log_training
    from visioncompress.quantize import quantize_aware

    out = a["quantized_model"]
    with _checkpoints(a, out) as checkpoints:
        result = quantize_aware(a["model"].path, a["dataset"].path, out.path, c[config_class], c[TrainConfig],
                                checkpoint_dir=checkpoints, post=c.get(DetectionPostConfig))
    describe_model(out, result)
    log_training(a["metrics"], result.metrics)


def _ptq_ladder(a, c):
    from visioncompress.kfp_io import describe_model, log_metrics
    from visioncompress.quantize.ladder import quantize_ladder

    config, out = c[LadderConfig], a["quantized_model"]
    ptq = c[{"openvino": OpenVinoPTQConfig, "onnx": OnnxPTQConfig, "torch": TorchPTQConfig}[config.backend]]
    qat = c.get({"openvino": OpenVinoQATConfig, "torch": TorchQATConfig}.get(config.backend))
    with _checkpoints(a, out) as checkpoints:
        result = quantize_ladder(a["model"].path, a["dataset"].path, out.path, config, ptq, qat, c[TrainConfig],
                                 c[DistillConfig], checkpoint_dir=checkpoints,
                                 threads=int(a["_params"].get("THREADS") or 0))
    describe_model(out, result)
    ladder = result.metrics["ladder"]
    out.metadata.update({"ladder_chosen": ladder["chosen"], "within_budget": ladder["within_budget"],
                         "fp32_layers": ladder["fp32_layers"]})
    log_metrics(a["metrics"], {"fp32_val_top1": ladder["fp32_val_top1"],
                               **{f"{r['rung']}-val_top1": r["val_top1"] for r in ladder["rungs"]},
                               **{f"{r['rung']}-drop": r["drop"] for r in ladder["rungs"]}})


def _distill(a, c):
    from visioncompress.distill import distill
    from visioncompress.kfp_io import describe_model, log_metrics

    out, teacher = a["distilled_model"], a.get("teacher")
    with _checkpoints(a, out) as checkpoints:
        result = distill(a["dataset"].path, out.path, c[ModelConfig], c[TrainConfig], c[DistillConfig],
                         teacher_dir=teacher.path if teacher is not None else None, checkpoint_dir=checkpoints)
    describe_model(out, result)
    log_metrics(a["metrics"], result.metrics)  # the scalars; per-epoch history stays in model.json


def _prune(a, c):
    from visioncompress.kfp_io import describe_model, log_metrics
    from visioncompress.prune import prune

    out = a["pruned_model"]
    with _checkpoints(a, out) as checkpoints:
        result = prune(a["model"].path, a["dataset"].path, out.path, c[PruneConfig], c[TrainConfig],
                       checkpoint_dir=checkpoints, distill_config=c[DistillConfig])
    describe_model(out, result)
    log_metrics(a["metrics"], result.metrics)


def _prune_detection(a, c):
    from visioncompress.detection.prune import prune_detector
    from visioncompress.kfp_io import describe_model, log_metrics

    out = a["pruned_model"]
    with _checkpoints(a, out) as checkpoints:
        result = prune_detector(a["model"].path, a["dataset"].path, out.path, c[GroupFisherConfig],
                                c[TrainConfig], checkpoint_dir=checkpoints)
    describe_model(out, result)
    log_metrics(a["metrics"], result.metrics)


def _qdq_onnx(a, c):
    from visioncompress.kfp_io import describe_model
    from visioncompress.quantize import quantize

    out = a["qdq_model"]
    describe_model(out, quantize(a["model"].path, a["dataset"].path, out.path, c[TensorRTConfig],
                                 post=c.get(DetectionPostConfig)))


def _qat_qdq_onnx(a, c):
    from visioncompress.kfp_io import describe_model, log_training
    from visioncompress.quantize.qat_tensorrt import qat_qdq_onnx

    out = a["qdq_model"]
    with _checkpoints(a, out) as checkpoints:
        result = qat_qdq_onnx(a["model"].path, a["dataset"].path, out.path, c[TensorRTQATConfig], c[TrainConfig],
                              checkpoint_dir=checkpoints)
    describe_model(out, result)
    log_training(a["metrics"], result.metrics)


def _build_tensorrt_engine(a, c):
    from visioncompress.kfp_io import describe_model
    from visioncompress.quantize.tensorrt import build_engine, tensorrt_unavailable_reason, write_skip_notice

    config, engine = c[TensorRTConfig], a["engine"]
    reason = tensorrt_unavailable_reason() if config.optional else None
    if reason is not None:
        print(f"NOTICE: TensorRT engine build skipped (TENSORRT_OPTIONAL): {reason}", flush=True)
        write_skip_notice(engine.path, reason)
        engine.metadata["skipped"] = reason
        return
    describe_model(engine, build_engine(a["qdq_model"].path, engine.path, config))


def _benchmark(a, c, *, gpu: bool = False):
    from visioncompress.benchmark import benchmark
    from visioncompress.kfp_io import log_metrics, write_json
    from visioncompress.report import kfp_scalars

    params = a["_params"]
    if gpu:
        from visioncompress.quantize.tensorrt import read_skip_notice

        skipped = read_skip_notice(a["model"].path)
        if skipped is not None:
            print(f"NOTICE: TensorRT benchmark skipped, no engine was built: {skipped}", flush=True)
            write_json(a["results"], [])
            return
    rows = benchmark(a["model"].path, a["dataset"].path, c[BenchmarkConfig], variant=params.get("VARIANT", ""),
                     fp32_runtimes=tuple(params.get("FP32_RUNTIMES") or ()), post=c.get(DetectionPostConfig))
    write_json(a["results"], rows)
    log_metrics(a["metrics"], kfp_scalars(rows))


def _report(a, c):
    from visioncompress.benchmark import read_results
    from visioncompress.kfp_io import log_metrics
    from visioncompress.report import build_report, kfp_scalars

    given = [a[n] for n in ("fp32", *PUBLISHABLE) if a.get(n) is not None]
    rows = read_results([x.path for x in given])
    build_report(rows, a["report"].path, a["results"].path, title=a["_params"].get("TITLE") or "visioncompress")
    log_metrics(a["summary"], kfp_scalars(rows))


def _skipped_results(a, c):
    from visioncompress.kfp_io import write_json

    print(f"NOTICE: {a['_params'].get('NOTICE') or 'this branch did not run'}", flush=True)
    write_json(a["results"], [])


def _publish(a, c):
    from visioncompress.kfp_io import write_json
    from visioncompress.storage import publish

    config = c[PublishConfig]
    given = {name: a[name] for name in PUBLISHABLE if a.get(name) is not None}
    sources = {name: x.uri for name, x in given.items()}
    sources.update(report=a["report"].uri, results=a["results"].uri)
    published = publish({name: x.path for name, x in given.items()}, a["report"].path, a["results"].path,
                        config.destination, accuracy_budget=config.accuracy_budget, run_date=config.run_date or None,
                        primary=config.primary or None, sources=sources, run_id=a["_params"].get("RUN_ID") or None,
                        publish_over_budget=config.publish_over_budget, keep_last=config.keep_last)
    manifest = a["manifest"]
    write_json(manifest, published)
    manifest.metadata.update({
        "destination": published["destination"] or "", "published": published["published"],
        "status": published["status"], "metric_name": published["metric_name"], "metric": published["metric"],
        "latest_moved": published["latest"]["moved"]})


_DS, _MODEL = ("dataset", "Dataset"), ("model", "Model")
_METRICS = ("metrics", "Metrics")
_MODELS_IN = tuple((n, "Model") for n in PUBLISHABLE)
_RESULTS_IN = tuple((n, "Artifact") for n in PUBLISHABLE)

STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("data_prep", "Prepare a dataset artifact (train/val/calibration/test splits) for classification or "
          "detection.", _data_prep, outputs=(("dataset", "Dataset"),),
          uses=(DataConfig, RuntimeConfig, StorageConfig), kind="data"),
    Stage("finetune", "Build (or load) the model and optionally fine-tune it; writes the FP32 model artifact.",
          _finetune, inputs=(_DS,), outputs=(_MODEL, _METRICS),
          uses=(ModelConfig, TrainConfig, RuntimeConfig, StorageConfig), kind="train"),
    Stage("quantize_torch", "PyTorch CPU post-training quantization; the output loads with torch.jit.load.",
          lambda a, c: _quantize(a, c, TorchPTQConfig), inputs=(_MODEL, _DS),
          outputs=(("quantized_model", "Model"),), uses=(TorchPTQConfig, RuntimeConfig)),
    Stage("quantize_onnx", "ONNX Runtime static INT8 quantization; the output loads with "
          "onnxruntime.InferenceSession.", lambda a, c: _quantize(a, c, OnnxPTQConfig), inputs=(_MODEL, _DS),
          outputs=(("quantized_model", "Model"),), uses=(OnnxPTQConfig, DetectionPostConfig, RuntimeConfig)),
    Stage("quantize_openvino", "OpenVINO INT8 via NNCF post-training quantization; the output loads with "
          "openvino.Core().read_model.", lambda a, c: _quantize(a, c, OpenVinoPTQConfig), inputs=(_MODEL, _DS),
          outputs=(("quantized_model", "Model"),), uses=(OpenVinoPTQConfig, DetectionPostConfig, RuntimeConfig)),
    Stage("qat_torch", "PyTorch CPU quantization-aware training (FX, x86 engine); the INT8 output loads with "
          "torch.jit.load.", lambda a, c: _qat(a, c, TorchQATConfig), inputs=(_MODEL, _DS),
          outputs=(("quantized_model", "Model"), _METRICS),
          uses=(TorchQATConfig, (TrainConfig, _QAT_TRAIN), RuntimeConfig), kind="train"),
    Stage("qat_openvino", "OpenVINO INT8 via NNCF quantization-aware training; the output loads with "
          "openvino.Core().read_model.", lambda a, c: _qat(a, c, OpenVinoQATConfig), inputs=(_MODEL, _DS),
          outputs=(("quantized_model", "Model"), _METRICS),
          uses=(OpenVinoQATConfig, (TrainConfig, _QAT_TRAIN), DetectionPostConfig, RuntimeConfig), kind="train"),
    Stage("ptq_ladder", "INT8 by the accuracy-aware ladder (LADDER_BACKEND): plain PTQ, then PTQ with accuracy "
          "control, then QAT distilled from the FP32 model, stopping at the first within ACCURACY_BUDGET points of "
          "FP32 validation top-1; a model over budget is marked so and publish refuses it.", _ptq_ladder,
          inputs=(_MODEL, _DS), outputs=(("quantized_model", "Model"), _METRICS),
          uses=(LadderConfig, TorchPTQConfig, OnnxPTQConfig, (OpenVinoPTQConfig, ("TRANSFORMER", "SUBSET_SIZE", "PRESET",
                                                                                 "FAST_BIAS_CORRECTION")),
                TorchQATConfig, OpenVinoQATConfig, (TrainConfig, _QAT_TRAIN), (DistillConfig, ("LAMBDA", "TEMPERATURE")),
                RuntimeConfig), kind="train"),
    Stage("distill", "Knowledge distillation: trains the student (MODEL) from the teacher (classification: "
          "softened logits; detection: PKD/CWD on FPN features).", _distill, inputs=(_DS,),
          optional_inputs=(("teacher", "Model"),), outputs=(("distilled_model", "Model"), _METRICS),
          uses=(ModelConfig, TrainConfig, DistillConfig, RuntimeConfig, StorageConfig), kind="train"),
    Stage("prune", "Structured pruning (torch-pruning) of the FP32 model, then optional fine-tuning.", _prune,
          inputs=(_MODEL, _DS), outputs=(("pruned_model", "Model"), _METRICS),
          uses=(PruneConfig, TrainConfig, (DistillConfig, ("LAMBDA", "TEMPERATURE")), RuntimeConfig), kind="train"),
    Stage("prune_detection", "GroupFisher structured pruning of a detector while it trains.", _prune_detection,
          inputs=(_MODEL, _DS), outputs=(("pruned_model", "Model"), _METRICS),
          uses=(GroupFisherConfig, (TrainConfig, _GROUP_FISHER_TRAIN), RuntimeConfig), kind="train"),
    Stage("qdq_onnx", "CPU half of TensorRT PTQ: a calibrated QDQ ONNX model (symmetric INT8, per-channel "
          "weights).", _qdq_onnx, inputs=(_MODEL, _DS), outputs=(("qdq_model", "Model"),),
          uses=((TensorRTConfig, ("CALIBRATION_BATCH_SIZE", "CALIBRATION_METHOD")), DetectionPostConfig,
                RuntimeConfig)),
    Stage("qat_qdq_onnx", "CPU half of TensorRTQAT: quantization-aware training in TensorRT's INT8 form "
          "(symmetric, per-channel weights), exported as a QDQ ONNX model.", _qat_qdq_onnx, inputs=(_MODEL, _DS),
          outputs=(("qdq_model", "Model"), _METRICS),
          uses=(TensorRTQATConfig, (TrainConfig, _QAT_TRAIN), RuntimeConfig), kind="train"),
    Stage("build_tensorrt_engine", "GPU half of TensorRT PTQ: build and serialise an INT8 engine from the QDQ "
          "ONNX model.", _build_tensorrt_engine, inputs=(("qdq_model", "Model"),), outputs=(("engine", "Model"),),
          uses=((TensorRTConfig, ("BATCH_SIZE", "FP16_FALLBACK", "DYNAMIC_BATCH", "MAX_BATCH_SIZE", "WORKSPACE_MB",
                                  "TENSORRT_OPTIONAL")),), image="gpu", kind="gpu"),
    Stage("benchmark", "Accuracy, latency p50/p90 at batch 1 and BATCH_SIZE, throughput and size, in the model's "
          "own runtime.", _benchmark, inputs=(_MODEL, _DS), outputs=(_METRICS, ("results", "Artifact")),
          uses=(BenchmarkConfig, DetectionPostConfig), extra=("VARIANT", "FP32_RUNTIMES"), kind="measure"),
    Stage("benchmark_gpu", "The benchmark on a GPU node: accuracy, latency, throughput and size of a TensorRT "
          "engine.", lambda a, c: _benchmark(a, c, gpu=True), inputs=(_MODEL, _DS),
          outputs=(_METRICS, ("results", "Artifact")), uses=(BenchmarkConfig,), extra=("VARIANT",),
          image="gpu", kind="measure"),
    Stage("report", "One comparison report (Markdown table + plot) over the benchmark results that were given.",
          _report, inputs=(("fp32", "Artifact"),), optional_inputs=_RESULTS_IN,
          outputs=(("report", "Markdown"), ("summary", "Metrics"), ("results", "Artifact")), extra=("TITLE",),
          kind="report"),
    Stage("skipped_results", "Stands in for a branch that did not run: an empty results list, so the report "
          "lists what ran.", _skipped_results, outputs=(("results", "Artifact"),), extra=("NOTICE",),
          kind="report"),
    Stage("publish", "Upload the given models, the report and a manifest to DESTINATION; move latest.json only "
          "within ACCURACY_BUDGET.", _publish, inputs=(("report", "Markdown"), ("results", "Artifact")),
          optional_inputs=_MODELS_IN, outputs=(("manifest", "Artifact"),), uses=(PublishConfig, StorageConfig),
          extra=("RUN_ID",), kind="publish"),
)}


def run_stage(name: str, args: Mapping[str, Any]) -> None:
    """Run stage ``name`` with a component's ``locals()``: artifacts by name, parameters by spec name."""
    from visioncompress.kfp_io import stage as user_errors
    from visioncompress.log import get_logger

    spec = STAGES[name]
    artifact_names = {n for n, _ in (*spec.inputs, *spec.outputs, *spec.optional_inputs)}
    params = {k: v for k, v in args.items() if k not in artifact_names}
    artifacts = {k: v for k, v in args.items() if k in artifact_names}
    with user_errors(name):
        configs = spec.configs(params)
        if StorageConfig in configs:
            os.environ.update(configs[StorageConfig].environment())
        threads = params.get("THREADS")
        if threads is not None:
            from visioncompress.resources import apply_threads

            get_logger(name).info("%s: %s", name, apply_threads(int(threads)).describe())
        if spec.kind == "train":
            from visioncompress.train.cluster import run_if_multi_node
            from visioncompress.train.launch import launch, prepare

            # NUM_NODES > 1: this pod only submits and watches a TrainJob (or PyTorchJob) that runs the stage
            # on the nodes (never inside such a job: its pods run the stage itself).
            if run_if_multi_node(name, artifacts, params):
                return

            # DEVICE, NUM_PROCESSES and CHECKPOINT_URI are checked here, before any work.
            output = spec.outputs[0][0]
            processes, artifacts["_checkpoints"] = prepare(name, configs[TrainConfig], artifacts[output])
            if processes > 1:
                launch(name, params, artifacts, processes, artifacts["_checkpoints"],
                       inputs=tuple(n for n, _ in (*spec.inputs, *spec.optional_inputs)),
                       outputs=tuple(n for n, _ in spec.outputs))
                return
        spec.run({**artifacts, "_params": params}, configs)
