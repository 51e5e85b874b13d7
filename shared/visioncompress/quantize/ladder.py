"""The accuracy-aware INT8 ladder: the first INT8 model whose validation top-1 stays within ACCURACY_BUDGET points
of the FP32 model's.

    quantize_ladder(model_dir, dataset_dir, output_dir, LadderConfig(...), ptq_config, qat_config, train_config,
                    distill_config) -> ModelMetadata

Rungs, tried in order, stopping at the first within budget (every candidate is measured the same way: top-1 on
the validation split in its own runtime, the figure NNCF's accuracy control uses too):

a. ``ptq``: plain post-training quantization, the backend's PTQ with its parameters as given.
b. ``ptq-accuracy-control``:
   - openvino: ``nncf.quantize_with_accuracy_control`` with ``max_drop`` = the budget (NNCF ranks the quantized
     layers and reverts the most harmful ones to floating point);
   - onnx and torch: layer fallback by measured sensitivity. Each quantizable layer (Conv/Gemm/MatMul nodes for
     ONNX Runtime, Conv/Linear modules for PyTorch FX) is kept in FP32 alone and the INT8 model's logits are
     compared with the FP32 model's on the validation split; the layers whose FP32 copy brings the logits closest
     come first, and the top 1, 2, 4, ... are kept in FP32 (``nodes_to_exclude`` / a ``None`` qconfig) until
     the model is within budget (then bisected back to the fewest), at most ``MAX_FALLBACK_SHARE`` of the layers. (NNCF's accuracy control also has
     an ONNX backend, but it quantizes with NNCF, not with the ONNX Runtime form rung a chose; falling back in
     rung a's own quantizer keeps the form.)
c. ``qat-distill``: quantization-aware training (torch: FX; openvino: NNCF) through the one training engine,
   distilled from the FP32 model (LAMBDA, TEMPERATURE); ONNX Runtime has no QAT path here, so for onnx this rung
   is recorded as not available.

The output is the chosen rung's model. When no rung is within budget, the most accurate candidate is written
with ``metrics.ladder.within_budget = False`` and a NOTICE says so; ``storage.publish`` refuses such a model
unless PUBLISH_OVER_BUDGET. ``metrics.ladder`` lists every rung tried (val top-1, drop, batch-1 latency, the
layers kept in FP32) and which was chosen.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from visioncompress.artifacts import ModelMetadata, read_model_metadata, staged_output, write_model_metadata
from visioncompress.config import (
    LadderConfig, OnnxPTQConfig, OpenVinoPTQConfig, OpenVinoQATConfig, TorchPTQConfig, TorchQATConfig, TrainConfig,
)
from visioncompress.errors import ConfigError
from visioncompress.log import get_logger

log = get_logger("quantize.ladder")

STAGE = "ptq_ladder"
MAX_FALLBACK_SHARE = 0.5  # rung b keeps at most this share of the quantizable layers in FP32
_PTQ = {"openvino": OpenVinoPTQConfig, "onnx": OnnxPTQConfig, "torch": TorchPTQConfig}
_QAT = {"openvino": OpenVinoQATConfig, "torch": TorchQATConfig}


@dataclasses.dataclass
class _Candidate:
    rung: str
    model_dir: Path | None
    val_top1: float | None
    fp32_layers: list[str] = dataclasses.field(default_factory=list)
    note: str = ""
    latency_b1_ms: float | None = None
    drop_se: float | None = None  # standard error of the measured drop, points


class _Measure:
    """Validation top-1 and FP32 logits, measured once; batch-1 latency from a few runs."""

    def __init__(self, dataset, threads: int = 0):
        from visioncompress.benchmark.runners import default_threads

        self.dataset, self.threads = dataset, default_threads(threads)
        self.x, self.y = self._val()
        self.fp32_logits = None

    def _val(self):
        xs, ys = zip(*self.dataset.batches("val", 256))
        return np.concatenate(xs), np.concatenate(ys)

    def logits(self, runner) -> np.ndarray:
        return np.concatenate([runner.predict(self.x[i:i + 256]) for i in range(0, len(self.x), 256)])

    def top1(self, logits: np.ndarray) -> float:
        return round(100.0 * float((logits.argmax(1) == self.y).mean()), 3)

    def logit_error(self, logits: np.ndarray) -> float:
        return float(np.mean((logits - self.fp32_logits) ** 2))

    def drop_se(self, logits: np.ndarray) -> float:
        """Standard error (points) of the top-1 drop measured on these images, from the paired outcomes: with
        n images of which the FP32 and INT8 models get different ones right in n10 + n01, the variance of the
        difference is ((n10 + n01) / n - d^2) / n. A budget smaller than about twice this cannot be resolved."""
        fp32_right = self.fp32_logits.argmax(1) == self.y
        right = logits.argmax(1) == self.y
        n = len(self.y)
        d = float(np.mean(fp32_right.astype(float) - right))
        discordant = float(np.mean(fp32_right != right))
        return round(100.0 * math.sqrt(max(discordant - d * d, 0.0) / n), 3)

    def artifact(self, model_dir) -> tuple[float, float, float]:
        """(val top-1, batch-1 p50 ms, standard error of the drop)."""
        from visioncompress.benchmark.measure import latency
        from visioncompress.benchmark.runners import load_runner

        runner = load_runner(model_dir, self.threads)[1]
        timing = latency(runner, self.x[:1], warmup=3, iterations=30, time_budget_s=2.0)
        logits = self.logits(runner)
        return self.top1(logits), timing["p50_ms"], self.drop_se(logits)


def _within(fp32: float, val: float | None, budget: float) -> bool:
    return val is not None and fp32 - val <= budget + 1e-9


def choose(fp32_top1: float, candidates: list[_Candidate], budget: float) -> tuple[_Candidate | None, bool]:
    """The first candidate within budget, else the most accurate one (None when none produced a model)."""
    for c in candidates:
        if c.model_dir is not None and _within(fp32_top1, c.val_top1, budget):
            return c, True
    measured = [c for c in candidates if c.model_dir is not None and c.val_top1 is not None]
    return (max(measured, key=lambda c: c.val_top1) if measured else None), False


# ---- rung b: layer fallback by measured sensitivity (ONNX Runtime and PyTorch) -------------------------------

def _fallback_search(layers: list[str], build, measure: _Measure, fp32_top1: float, budget: float):
    """``build(fp32_layers) -> runner``. Ranks layers by how much keeping each alone in FP32 brings the INT8
    logits towards FP32, then keeps the top k in FP32 for k = 1, 2, 4, ... (at most ``MAX_FALLBACK_SHARE`` of
    the layers) until within budget, and bisects back to the smallest k within it. Returns
    (fp32 layers, val top-1, sensitivity ranking)."""
    base = measure.logit_error(measure.logits(build([])))
    gains = sorted(((base - measure.logit_error(measure.logits(build([name])))), name) for name in layers)
    gains.reverse()
    ranking = [name for _, name in gains]
    report = [{"layer": n, "logit_mse_gain": round(g, 6)} for g, n in gains]
    limit = max(1, math.floor(len(layers) * MAX_FALLBACK_SHARE))
    tried: dict[int, float] = {}

    def top1_with(k: int) -> float:
        if k not in tried:
            tried[k] = measure.top1(measure.logits(build(ranking[:k])))
            log.info("ladder: %d layer(s) in FP32 -> val top-1 %.3f (FP32 %.3f)", k, tried[k], fp32_top1)
        return tried[k]

    k = 1
    while not _within(fp32_top1, top1_with(k), budget) and k < limit:
        k = min(2 * k, limit)
    if _within(fp32_top1, tried[k], budget):
        low = max((j for j in tried if j < k), default=0)  # not within at low (or nothing kept)
        while k - low > 1:
            mid = (low + k) // 2
            if _within(fp32_top1, top1_with(mid), budget):
                k = mid
            else:
                low = mid
    else:
        k = max(tried, key=lambda j: (tried[j], -j))  # none within: the most accurate tried
    return ranking[:k], tried[k], report


def _torch_fallback(model_dir, dataset_dir, out: Path, config: TorchPTQConfig, measure: _Measure, fp32_top1, budget):
    import torch

    from visioncompress.benchmark.runners import TorchRunner
    from visioncompress.quantize._common import derived_metadata, load_inputs
    from visioncompress.quantize.torch import calibrate_fx, convert_int8, resolve_engine, save_frozen

    model, parent, dataset = load_inputs(model_dir, dataset_dir)
    config, choice = resolve_engine(config)
    torch.backends.quantized.engine = config.engine
    example = torch.from_numpy(dataset.example_input(1))
    layers = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    prepared = calibrate_fx(model, dataset, example, config)  # calibrated once; each candidate only converts

    def build(fp32_layers):
        return TorchRunner(convert_int8(prepared, config, fp32_layers), measure.threads)

    kept, _, ranking = _fallback_search(layers, build, measure, fp32_top1, budget)
    metadata = derived_metadata(parent, model_dir, stage="quantize_torch", precision="int8", config=config,
                                fmt="torchscript")
    if choice is not None:
        metadata.params["INT8_ENGINE"] = choice
    save_frozen(convert_int8(prepared, config, kept), example, metadata, out)
    return kept, ranking


def _onnx_fallback(model_dir, dataset_dir, out: Path, config: OnnxPTQConfig, measure: _Measure, fp32_top1, budget):
    import onnx
    import torch

    from visioncompress.benchmark.runners import OnnxRunner
    from visioncompress.quantize._common import calibration_arrays, derived_metadata, load_inputs
    from visioncompress.quantize.onnx import _precision, _quantize_static, export_onnx, resolve_form

    model, parent, dataset = load_inputs(model_dir, dataset_dir)
    example = torch.from_numpy(dataset.example_input(1))
    calibration = calibration_arrays(dataset, config.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fp32 = export_onnx(model, example, tmp / "fp32.onnx")
        resolved, form = resolve_form(fp32, calibration, config)
        layers: list[str] = []

        def collect(prepared):
            layers.extend(n.name for n in onnx.load(str(prepared)).graph.node if n.op_type in ("Conv", "Gemm", "MatMul"))
            return []

        def build(fp32_layers, target=None):
            target = target or tmp / "candidate.onnx"
            if not layers:
                _quantize_static(fp32, target, calibration, resolved, exclude=collect)
            else:
                _quantize_static(fp32, target, calibration, resolved, exclude=lambda _: list(fp32_layers))
            return OnnxRunner(target, measure.threads)

        build([])  # lists the layers
        kept, _, ranking = _fallback_search(list(layers), build, measure, fp32_top1, budget)
        metadata = derived_metadata(parent, model_dir, stage="quantize_onnx", precision=_precision(resolved),
                                    config=resolved, fmt="onnx")
        if form is not None:
            metadata.params["INT8_FORM"] = form.as_dict()
        with staged_output(out) as scratch:
            build(kept, scratch / metadata.file_name)
            write_model_metadata(scratch, metadata)
    return kept, ranking


def _openvino_fp32_layers(model_dir) -> list[str]:
    """Convolution/MatMul nodes of an OpenVINO IR whose input is not fake-quantized (they run in floating point)."""
    import openvino as ov

    metadata = read_model_metadata(model_dir)
    model = ov.Core().read_model(str(Path(model_dir) / metadata.file_name))
    kept = []
    for op in model.get_ordered_ops():
        if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul"):
            source = op.input_value(0).get_node()
            if source.get_type_name() != "FakeQuantize":
                kept.append(op.get_friendly_name())
    return kept


# ---- the ladder -----------------------------------------------------------------------------------------------

def quantize_ladder(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, output_dir: str | os.PathLike,
                    config: LadderConfig, ptq_config, qat_config, train_config: TrainConfig, distill_config, *,
                    checkpoint_dir: str | os.PathLike | None = None, threads: int = 0) -> ModelMetadata:
    """``ptq_config``: the backend's PTQ config (OpenVinoPTQConfig / OnnxPTQConfig / TorchPTQConfig);
    ``qat_config``: its QAT config (None for onnx); ``distill_config``: LAMBDA and TEMPERATURE of rung c."""
    from visioncompress.data import load_dataset
    from visioncompress.models import load_torch_module
    from visioncompress.quantize import quantize, quantize_aware

    backend, budget = config.backend, config.accuracy_budget
    if not isinstance(ptq_config, _PTQ[backend]):
        raise ConfigError("LADDER_BACKEND", backend, f"a {_PTQ[backend].__name__} for its PTQ rungs "
                          f"(got {type(ptq_config).__name__})")
    if read_model_metadata(model_dir).task != "classification":
        raise ConfigError("LADDER_BACKEND", backend, "a classification model (the ladder measures top-1)")
    dataset = load_dataset(dataset_dir)
    if not dataset.manifest.splits.get("val"):
        raise ConfigError("VAL_FRACTION", 0, "a validation split > 0: the ladder measures every rung on it")
    measure = _Measure(dataset, threads)
    from visioncompress.benchmark.runners import load_runner

    measure.fp32_logits = measure.logits(load_runner(model_dir, measure.threads)[1])
    fp32_top1 = measure.top1(measure.fp32_logits)
    log.info("ladder (%s): FP32 val top-1 %.3f on %d images; budget %g point(s)", backend, fp32_top1,
             len(measure.y), budget)

    candidates: list[_Candidate] = []
    with tempfile.TemporaryDirectory(prefix="ladder-") as tmp:
        tmp = Path(tmp)

        def record(c: _Candidate) -> bool:
            if c.model_dir is not None and c.val_top1 is None:
                c.val_top1, c.latency_b1_ms, c.drop_se = measure.artifact(c.model_dir)
            candidates.append(c)
            drop = None if c.val_top1 is None else round(fp32_top1 - c.val_top1, 3)
            log.info("ladder rung %s: val top-1 %s (drop %s, budget %g)%s", c.rung, c.val_top1, drop, budget,
                     f"; {len(c.fp32_layers)} layer(s) in FP32" if c.fp32_layers else "")
            return _within(fp32_top1, c.val_top1, budget) and c.model_dir is not None

        # a. plain PTQ
        plain = dataclasses.replace(ptq_config, max_accuracy_drop=0.0) if backend == "openvino" else ptq_config
        quantize(model_dir, dataset_dir, tmp / "ptq", plain)
        done = record(_Candidate("ptq", tmp / "ptq", None))

        # b. PTQ with accuracy control
        ranking: list[dict] = []
        if not done:
            out = tmp / "ptq-accuracy-control"
            if backend == "openvino":
                # NNCF needs a positive max_drop; a budget <= 0 asks for the smallest drop it can reach
                quantize(model_dir, dataset_dir, out,
                         dataclasses.replace(ptq_config, max_accuracy_drop=max(budget, 0.01)))
                kept = _openvino_fp32_layers(out)
                note = "nncf.quantize_with_accuracy_control"
            else:
                search = _torch_fallback if backend == "torch" else _onnx_fallback
                kept, ranking = search(model_dir, dataset_dir, out, ptq_config, measure, fp32_top1, budget)
                note = "layer fallback by measured sensitivity"
            done = record(_Candidate("ptq-accuracy-control", out, None, kept, note))

        # c. QAT distilled from the FP32 model
        if not done:
            if backend not in _QAT:
                record(_Candidate("qat-distill", None, None, note="not available for onnx (no ONNX Runtime QAT "
                                  "path; use LADDER_BACKEND openvino or torch)"))
            else:
                out = tmp / "qat-distill"
                quantize_aware(model_dir, dataset_dir, out, qat_config, train_config,
                               checkpoint_dir=checkpoint_dir, teacher=load_torch_module(model_dir),
                               distill_config=distill_config)
                done = record(_Candidate("qat-distill", out, None, note=f"QAT {qat_config.qat_epochs} epoch(s), "
                                         f"distilled from FP32 (LAMBDA {distill_config.lambda_}, TEMPERATURE "
                                         f"{distill_config.temperature})"))

        chosen, within = choose(fp32_top1, candidates, budget)
        rungs = [{"rung": c.rung, "val_top1": c.val_top1,
                  "drop": None if c.val_top1 is None else round(fp32_top1 - c.val_top1, 3),
                  "within_budget": _within(fp32_top1, c.val_top1, budget) and c.model_dir is not None,
                  "drop_se": c.drop_se, "latency_b1_ms": c.latency_b1_ms, "fp32_layers": c.fp32_layers,
                  "note": c.note}
                 for c in candidates]
        summary = {"backend": backend, "budget": budget, "fp32_val_top1": fp32_top1, "val_images": len(measure.y),
                   "rungs": rungs, "chosen": chosen.rung, "within_budget": within,
                   "fp32_layers": chosen.fp32_layers, "sensitivity": ranking[:10]}
        if within:
            log.info("ladder: chose %s (val top-1 %.3f, drop %.3f <= budget %g)", chosen.rung, chosen.val_top1,
                     fp32_top1 - chosen.val_top1, budget)
        else:
            summary["message"] = (
                f"no rung kept validation top-1 within ACCURACY_BUDGET={budget:g} of FP32 ({fp32_top1:.3f}): "
                + "; ".join(f"{r['rung']} {r['val_top1']} (drop {r['drop']})" for r in rungs)
                + f". The most accurate candidate ({chosen.rung}) is written marked over budget; publish refuses "
                "it unless PUBLISH_OVER_BUDGET=True")
            log.warning("NOTICE: %s", summary["message"])
        if chosen.drop_se is not None and 2 * chosen.drop_se > budget:
            summary["resolution"] = (
                f"the chosen model's drop ({fp32_top1 - chosen.val_top1:.2f}) is measured on {len(measure.y)} "
                f"validation images with a standard error of {chosen.drop_se:.2f} points, so ACCURACY_BUDGET="
                f"{budget:g} is within the measurement's noise (about {2 * chosen.drop_se:.2f} points, two standard "
                "errors, would be resolved); a larger validation split (VAL_FRACTION, MAX_TRAIN_SAMPLES) makes the "
                "decision firmer")
            log.warning("NOTICE: %s", summary["resolution"])
        parent = read_model_metadata(chosen.model_dir)
        metadata = parent.derive(stage=STAGE, params={**parent.params, "LADDER_BACKEND": backend,
                                                      "ACCURACY_BUDGET": budget},
                                 metrics={**parent.metrics, "ladder": summary})
        with staged_output(output_dir) as scratch:
            for path in chosen.model_dir.iterdir():
                if path.name != "model.json":
                    (shutil.copytree if path.is_dir() else shutil.copy2)(path, scratch / path.name)
            metadata = write_model_metadata(scratch, metadata)
    return metadata


def ladder_summary(metadata: ModelMetadata) -> dict | None:
    """``metrics.ladder`` of a model the ladder wrote (None for other models)."""
    value = metadata.metrics.get("ladder") if isinstance(metadata.metrics, dict) else None
    return value if isinstance(value, dict) else None


__all__ = ["choose", "ladder_summary", "quantize_ladder"]
