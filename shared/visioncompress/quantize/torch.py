"""PyTorch CPU post-training quantization (FX graph mode), saved as TorchScript.

A quantized module no longer round-trips through ``torch.save`` of the whole module on
torch 2.14, so the result is TorchScript: ``torch.jit.load(path)`` gives a runnable INT8 model.

The quantized engine (QUANTIZED_ENGINE, ``auto`` by default) decides the activation range and the kernels, and a
model must run under the engine it was quantized for: ``fbgemm``/``x86`` calibrate activations to 7 bits
(``reduce_range``) because their AVX2 kernels multiply u8 x s8 pairs into saturating 16-bit sums; ``onednn``
uses the full 8 bits, exact on CPUs with a VNNI/AMX dot product. ``auto`` picks ``onednn`` there, ``x86``
on other x86 CPUs and ``qnnpack`` on ARM; the choice is in the model's metadata (``params.QUANTIZED_ENGINE``,
``params.INT8_ENGINE``) and ``use_engine(metadata)`` sets it before loading (the benchmark runners do).
Measured (MobileNetV2 fine-tuned at 224 px, 427 validation images, Xeon with AVX-512 VNNI and AMX): FP32 80.56,
``x86`` 78.22, ``onednn`` 80.56, at the same speed; the ``onednn`` model loaded under ``x86`` gives 8.9.
"""

from __future__ import annotations

import copy
import dataclasses
import os

from visioncompress.artifacts import ModelMetadata
from visioncompress.config import TorchPTQConfig
from visioncompress.cpu import CpuFeatures, cpu_features
from visioncompress.errors import MissingDependencyError
from visioncompress.log import get_logger
from visioncompress.models import save_torchscript
from visioncompress.quantize._common import derived_metadata, load_inputs

log = get_logger("quantize.torch")

PRECISION = {"static": "int8", "weight": "int8-weights", "fusion": "fp32-fused"}
AUTO = "auto"


def choose_engine(features: CpuFeatures) -> tuple[str, str]:
    """(engine, why) for a CPU with ``features``."""
    if not features.x86:
        return "qnnpack", f"on {features.machine} PyTorch's INT8 kernels are QNNPACK's"
    if features.vnni or features.amx_int8:
        return "onednn", ("oneDNN's INT8 kernels use the CPU's VNNI/AMX dot product (u8 x s8 into 32-bit sums, "
                          "no saturation), so activations keep the full 8-bit range; fbgemm (x86) calibrates "
                          "them to 7 bits (reduce_range) and loses accuracy for no speed")
    return "x86", ("without VNNI the AVX2 kernels multiply u8 x s8 pairs into saturating 16-bit sums: fbgemm "
                   "(x86) calibrates activations to 7 bits (reduce_range) to stay exact")


def resolve_engine(config, features: CpuFeatures | None = None):
    """(``config`` with QUANTIZED_ENGINE ``auto`` replaced by this node's engine, the choice's record or None)."""
    import torch

    if config.engine != AUTO:
        return config, None
    features = features or cpu_features()
    engine, why = choose_engine(features)
    supported = torch.backends.quantized.supported_engines
    if engine not in supported:
        fallback = next(e for e in ("x86", "fbgemm", "onednn", "qnnpack") if e in supported)
        why = f"{engine} ({why}) is not in this torch build's engines {supported}: {fallback}"
        engine = fallback
    log.info("torch quantized engine for this node: %s (%s)", engine, why)
    return dataclasses.replace(config, engine=engine), {"engine": engine, "reason": why, "cpu": features.summary(),
                                                        "requested": AUTO}


def use_engine(metadata: ModelMetadata) -> None:
    """Set ``torch.backends.quantized.engine`` to the one ``metadata``'s INT8 model was quantized for."""
    import torch

    engine = (metadata.params or {}).get("QUANTIZED_ENGINE")
    if metadata.precision != "int8" or engine in (None, AUTO):
        return
    if engine not in torch.backends.quantized.supported_engines:
        raise MissingDependencyError(
            f"the INT8 model was quantized for torch's {engine!r} engine (QUANTIZED_ENGINE), which this torch "
            f"build cannot run (engines: {torch.backends.quantized.supported_engines}); quantize it again on this "
            "kind of node")
    torch.backends.quantized.engine = engine


def _clamp_site(gm, node) -> str | None:
    """The convolution a ReLU6 ``node`` clamps (directly or through a BatchNorm), when its input is not the graph
    input; else None."""
    import torch

    modules = dict(gm.named_modules())
    source = node.args[0] if node.args else None
    if getattr(source, "op", None) == "call_module" and isinstance(modules.get(source.target), torch.nn.BatchNorm2d):
        if len(source.users) != 1:
            return None
        source = source.args[0]
    if getattr(source, "op", None) != "call_module" or not isinstance(modules.get(source.target), torch.nn.Conv2d):
        return None
    if len(source.users) != 1 or getattr(source.args[0], "op", None) == "placeholder":
        return None  # the first convolution: its input observer would take the fixed range too
    return source.target


def qconfig_mapping(model, engine: str, *, qat: bool = False):
    """(a copy of ``model`` ready for FX quantization, its QConfigMapping) for ``engine``.

    A ReLU6 after a convolution (+BatchNorm) becomes a ReLU fused into that convolution whose output is quantized
    on the fixed range [0, 6] (``FixedQParamsObserver``: the top code, 255, is 6.0), which is ReLU6 exactly: the
    clamp is the quantizer's own saturation, as in ONNX Runtime's and OpenVINO's INT8 graphs. Left alone, FX keeps
    ReLU6 as a separate ``hardtanh`` on the quantized tensor and quantizes the convolution's output over its whole
    pre-activation range (measured on MobileNetV2 at 224 px: ``hardtanh_`` 14 % of the INT8 run at batch 1 and
    29 % at batch 32). Only for engines with 8-bit activations (onednn, qnnpack): x86/fbgemm's 7-bit activations
    live in 8-bit tensors, which do not saturate at the 7-bit top code."""
    import torch
    from torch.ao.quantization import QConfig, get_default_qat_qconfig_mapping, get_default_qconfig_mapping
    from torch.ao.quantization.fake_quantize import FixedQParamsFakeQuantize
    from torch.ao.quantization.observer import FixedQParamsObserver

    mapping = (get_default_qat_qconfig_mapping if qat else get_default_qconfig_mapping)(engine)
    model = copy.deepcopy(model)
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as error:  # noqa: BLE001 - prepare_fx reports untraceable models itself
        log.info("ReLU6 fusion skipped: the model does not trace (%s)", error)
        return model, mapping
    modules = dict(gm.named_modules())
    sites = [(node.target, conv) for node in gm.graph.nodes
             if node.op == "call_module" and isinstance(modules.get(node.target), torch.nn.ReLU6)
             and (conv := _clamp_site(gm, node)) is not None]
    default = mapping.global_qconfig
    top = default.activation().quant_max
    if not sites or top != 255:
        if sites:  # x86/fbgemm: 7-bit activations in an 8-bit tensor, so the top code is not where it saturates
            log.info("ReLU6 kept as a separate op: engine %s quantizes activations to 7 bits", engine)
        return model, mapping
    observer = FixedQParamsObserver.with_args(scale=6.0 / top, zero_point=0, dtype=torch.quint8, quant_min=0,
                                              quant_max=top)
    fixed = QConfig(activation=FixedQParamsFakeQuantize.with_args(observer=observer) if qat else observer,
                    weight=default.weight)
    for relu6, conv in sites:
        parent, _, child = relu6.rpartition(".")
        relu = torch.nn.ReLU()
        relu.train(model.training)
        setattr(model.get_submodule(parent) if parent else model, child, relu)
        mapping = mapping.set_module_name(conv, fixed).set_module_name(relu6, fixed)
    log.info("%d ReLU6 fused into their convolutions' INT8 output range [0, 6]", len(sites))
    return model, mapping


def calibrate_fx(model, dataset, example, config: TorchPTQConfig):
    """``model`` prepared for FX static INT8 (observers inserted) and calibrated on the calibration split."""
    import torch
    from torch.ao.quantization.quantize_fx import prepare_fx

    model, mapping = qconfig_mapping(model, config.engine)
    prepared = prepare_fx(model.eval(), mapping, (example,))
    prepared.vc_qconfig_mapping = mapping  # convert_int8 starts from the same mapping
    seen = 0
    with torch.inference_mode():
        for x, _ in dataset.torch_batches("calibration", config.batch_size):
            prepared(x)
            seen += len(x)
    log.info("calibrated on %d training images", seen)
    return prepared


def convert_int8(prepared, config: TorchPTQConfig, fp32_layers=()):
    """The INT8 model of a calibrated ``prepared`` one (left as it is); ``fp32_layers`` (module names) stay in
    floating point: their qconfig is None at conversion (the accuracy ladder's layer fallback)."""
    from torch.ao.quantization.quantize_fx import convert_fx

    mapping = None
    if fp32_layers:
        mapping = copy.deepcopy(prepared.vc_qconfig_mapping)
        for name in fp32_layers:
            mapping = mapping.set_module_name(name, None)
    return convert_fx(copy.deepcopy(prepared), qconfig_mapping=mapping)


def static_int8(model, dataset, example, config: TorchPTQConfig, fp32_layers=()):
    """FX static INT8 of ``model`` calibrated on the calibration split; ``fp32_layers`` keep floating point."""
    return convert_int8(calibrate_fx(model, dataset, example, config), config, fp32_layers)


def _weight_only(model):
    import torch

    # INT8 weights with activations quantized on the fly; torch only has kernels for these layer types.
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear, torch.nn.LSTM, torch.nn.GRU},
                                                  dtype=torch.qint8)


def _fusion(model):
    from torch.ao.quantization.quantize_fx import fuse_fx

    return fuse_fx(model)


def save_frozen(quantized, example, metadata: ModelMetadata, output_dir) -> ModelMetadata:
    """The quantized module as frozen TorchScript (``torch.jit.load`` runs it)."""
    import torch

    with torch.inference_mode():
        scripted = torch.jit.freeze(torch.jit.trace(quantized, example, check_trace=False).eval())
    return save_torchscript(scripted, metadata, output_dir)


def quantize_torch(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, output_dir: str | os.PathLike,
                   config: TorchPTQConfig) -> ModelMetadata:
    import torch

    model, parent, dataset = load_inputs(model_dir, dataset_dir)
    config, choice = resolve_engine(config)
    torch.backends.quantized.engine = config.engine
    example = torch.from_numpy(dataset.example_input(1))
    model = copy.deepcopy(model).eval()
    log.info("torch PTQ choice=%s engine=%s", config.choice, config.engine)
    if config.choice == "static":
        quantized = static_int8(model, dataset, example, config)
    elif config.choice == "weight":
        quantized = _weight_only(model)
    else:
        quantized = _fusion(model)
    metadata = derived_metadata(parent, model_dir, stage="quantize_torch", precision=PRECISION[config.choice],
                                config=config, fmt="torchscript")
    if choice is not None:
        metadata.params["INT8_ENGINE"] = choice
    metadata = save_frozen(quantized, example, metadata, output_dir)
    log.info("TorchScript model written to %s (load with %s)", output_dir, metadata.load_call)
    return metadata
