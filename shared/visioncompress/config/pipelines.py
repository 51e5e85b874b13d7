"""Every pipeline as data: its run parameters (the configs it uses), presets, and description.

No KFP here: the CLI's help, job-file mapping and validation read this table without building a graph;
``visioncompress.pipelines`` builds each pipeline function's signature from it.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Mapping

from visioncompress.config import (
    BenchmarkConfig, DataConfig, DetectionPostConfig, DistillConfig, GroupFisherConfig, LadderConfig, ModelConfig, OnnxPTQConfig, OpenVinoPTQConfig,
    OpenVinoQATConfig, PruneConfig, PublishConfig, RuntimeConfig, StorageConfig, TensorRTConfig, TensorRTQATConfig, TorchPTQConfig,
    TorchQATConfig, TrainConfig,
)
from visioncompress.config.catalog import PARAMS, Param
from visioncompress.errors import ConfigError

_COMMON = (DataConfig, ModelConfig, TrainConfig, BenchmarkConfig, RuntimeConfig, StorageConfig, PublishConfig)
# Detection pipelines start from a small detector on the offline detection set.
_DETECTION = {"insize": 128, "BATCH_SIZE": 8, "MODEL": "fcos_resnet18_fpn",
              "DATASET_SOURCE": "fashion-mnist-detection", "CALIBRATION_SAMPLES": 128}


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    description: str
    uses: tuple[type, ...]
    extra: tuple[str, ...] = ()  # pipeline-level parameters outside the stage configs
    defaults: Mapping[str, Any] = field(default_factory=dict)  # this pipeline's presets
    task: str = "classification"

    @property
    def function(self) -> str:
        """Where the pipeline function lives: visioncompress.pipelines.<name>:<name>."""
        return f"visioncompress.pipelines.{self.name}:{self.name}"

    def parameters(self) -> list[Param]:
        names: list[str] = []
        for cls in self.uses:
            names += [f.metadata["spec"] for f in dataclasses.fields(cls) if f.metadata["spec"] not in names]
        names += [n for n in self.extra if n not in names]
        unknown = set(self.defaults) - set(names)
        if unknown:
            raise ValueError(f"pipeline {self.name}: presets for parameters it does not have: {sorted(unknown)}")
        params = [PARAMS[n] for n in names if not PARAMS[n].internal]
        return [dataclasses.replace(p, default=self.defaults[p.name]) if p.name in self.defaults else p
                for p in params]

    def defaults_map(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.parameters()}


def _spec(name, description, *uses, extra=(), defaults=None, task="classification"):
    return PipelineSpec(name, description, _COMMON + tuple(uses), tuple(extra), dict(defaults or {}), task)


PIPELINES: dict[str, PipelineSpec] = {p.name: p for p in (
    _spec("compare", "Fine-tune once; PyTorch, ONNX Runtime and OpenVINO INT8 PTQ; one comparison report.",
          TorchPTQConfig, OnnxPTQConfig, OpenVinoPTQConfig),
    _spec("compare_all", "Fine-tune once; PTQ on every CPU backend (and TensorRT when USE_TENSORRT), QAT x2, "
          "distillation and pruning side by side in one report.",
          TorchPTQConfig, OnnxPTQConfig, OpenVinoPTQConfig, TorchQATConfig, OpenVinoQATConfig, DistillConfig,
          PruneConfig, TensorRTConfig, extra=("STUDENT_MODEL", "USE_TENSORRT")),
    _spec("distill", "Prepare data; the student fine-tuned alone (baseline) and distilled from the teacher.",
          DistillConfig),
    _spec("prune", "Structured pruning (torch-pruning) of the fine-tuned model, then fine-tuning (PRUNE_RECOVERY "
          "distill: distilled from the unpruned model); pruned vs FP32.", PruneConfig, extra=("LAMBDA", "TEMPERATURE")),
    _spec("prune_quantize", "Fine-tune; structured pruning (torch-pruning) and fine-tuning or distillation from the "
          "unpruned model (PRUNE_RECOVERY); INT8 PTQ of the pruned model on PyTorch, ONNX Runtime and OpenVINO; every "
          "variant in every CPU runtime, with a Pareto plot.",
          PruneConfig, TorchPTQConfig, OnnxPTQConfig, OpenVinoPTQConfig, extra=("LAMBDA", "TEMPERATURE"),
          defaults={"activation_type": "auto", "quant_format": "auto"}),
    _spec("ptq_ladder", "Fine-tune; INT8 in LADDER_BACKEND (openvino, onnx, torch) by the accuracy ladder: plain PTQ, "
          "PTQ with accuracy control (NNCF / layer fallback by measured sensitivity), QAT distilled from FP32, "
          "stopping at the first within ACCURACY_BUDGET; every rung in the model's metadata.", LadderConfig,
          TorchPTQConfig, OnnxPTQConfig, TorchQATConfig, OpenVinoQATConfig, extra=("PRESET", "FAST_BIAS_CORRECTION", "LAMBDA",
                                                                              "TEMPERATURE")),
    _spec("qat_torch", "Fine-tune, then PyTorch quantization-aware training (FX, TorchScript INT8).",
          TorchQATConfig),
    _spec("qat_openvino", "Fine-tune, then OpenVINO quantization-aware training through NNCF.", OpenVinoQATConfig),
    _spec("ptq_tensorrt", "Fine-tune; calibrated QDQ ONNX on a CPU node; INT8 TensorRT engine built and "
          "benchmarked on a GPU node.", TensorRTConfig),
    _spec("qat_tensorrt", "Fine-tune; quantization-aware training in TensorRT's INT8 form, exported as a QDQ ONNX "
          "model on a CPU node; INT8 TensorRT engine built and benchmarked on a GPU node.", TensorRTQATConfig,
          extra=("FP16_FALLBACK", "DYNAMIC_BATCH", "MAX_BATCH_SIZE", "WORKSPACE_MB", "TENSORRT_OPTIONAL")),
    _spec("ptq_torch", "Fine-tune; PyTorch CPU INT8 post-training quantization; INT8 vs FP32.", TorchPTQConfig),
    _spec("ptq_onnx", "Fine-tune; ONNX Runtime INT8 post-training quantization; INT8 vs FP32.", OnnxPTQConfig),
    _spec("ptq_openvino", "Fine-tune; OpenVINO INT8 post-training quantization through NNCF; INT8 vs FP32.",
          OpenVinoPTQConfig),
    _spec("detect_ptq_onnx", "Detection: fine-tune a detector; ONNX Runtime INT8 PTQ of the end-to-end graph (NMS "
          "inside, post-processing in FP32); mAP and latency against FP32.", OnnxPTQConfig, DetectionPostConfig,
          defaults={**_DETECTION, "activation_type": "QUInt8"}, task="detection"),
    _spec("detect_ptq_openvino", "Detection: fine-tune a detector; OpenVINO INT8 PTQ through NNCF of the end-to-end "
          "model (MAX_ACCURACY_DROP > 0: with mAP accuracy control); mAP and latency against FP32.", OpenVinoPTQConfig,
          DetectionPostConfig, defaults={**_DETECTION, "TRANSFORMER": False, "SUBSET_SIZE": 128}, task="detection"),
    _spec("detect_ptq_tensorrt", "Detection: fine-tune a detector; end-to-end QDQ ONNX with NMS calibrated on a CPU "
          "node; INT8 TensorRT engine (NMS inside) built and benchmarked on a GPU node.", TensorRTConfig,
          DetectionPostConfig, defaults=_DETECTION, task="detection"),
    _spec("detect_qat_openvino", "Detection: fine-tune a detector; OpenVINO QAT through NNCF, exported end to end "
          "(NMS inside); mAP and latency against FP32.", OpenVinoQATConfig, DetectionPostConfig,
          defaults={**_DETECTION, "TRANSFORMER": False, "SUBSET_SIZE": 128}, task="detection"),
    _spec("detect_distill", "Detection: the student detector alone (baseline) and distilled from the teacher "
          "(PKD/CWD on FPN features).", DistillConfig,
          defaults={**_DETECTION, "TEACHER_MODEL": "fcos_resnet34_fpn"}, task="detection"),
    _spec("detect_prune", "Detection: fine-tune a detector; GroupFisher pruning to TARGET_FLOP_RATIO while "
          "training; mAP and latency against FP32.", GroupFisherConfig, defaults=_DETECTION, task="detection"),
)}


def pipeline_spec(name: str) -> PipelineSpec:
    if name not in PIPELINES:
        close = difflib.get_close_matches(str(name), list(PIPELINES), n=1)
        raise ConfigError("pipeline", name, sorted(PIPELINES) if not close else
                          f"one of {sorted(PIPELINES)} (did you mean {close[0]!r}?)")
    return PIPELINES[name]
