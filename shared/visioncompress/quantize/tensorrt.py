"""GPU Post Training Quantization - TensorRT, by explicit quantization.

Two steps, as TensorRT recommends today:

1. ``make_qdq_onnx`` (CPU): export the FP32 model to ONNX and insert QuantizeLinear/DequantizeLinear
   pairs calibrated on the dataset's calibration split (drawn from training data): INT8 activations
   with symmetric ranges (zero-point 0), INT8 weights with per-channel symmetric scales, biases left
   in float. That is the form TensorRT's ONNX parser consumes; onnxruntime's CPU provider runs it too.
2. ``build_engine`` (GPU): parse that ONNX model with TensorRT, build an engine whose INT8 layers are
   exactly the Q/DQ-wrapped ones (no TensorRT calibrator), serialise it to ``model.engine`` and check
   that ``tensorrt.Runtime`` deserialises it.

Neither TensorRT nor a GPU is needed to import this module; ``require_tensorrt`` turns their absence
into one ``MissingDependencyError`` line.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from visioncompress.artifacts import (
    ModelMetadata, read_model_metadata, staged_output, write_model_metadata,
)
from visioncompress.config.tensorrt import TensorRTConfig
from visioncompress.data import PreparedDataset
from visioncompress.errors import ArtifactError, MissingDependencyError
from visioncompress.log import get_logger
from visioncompress.quantize._common import derived_metadata, load_inputs
from visioncompress.quantize.onnx import INPUT_NAME, export_onnx

log = get_logger("quantize.tensorrt")

QDQ_STAGE = "qdq_onnx"
QDQ_STAGES = (QDQ_STAGE, "qat_qdq_onnx")  # TensorRT PTQ's calibrated model, TensorRTQAT's trained one
ENGINE_STAGE = "build_tensorrt_engine"
SKIP_NOTICE = "skipped.json"
GPU_IMAGE_HINT = "the visioncompress GPU image (images/gpu/Dockerfile) on a GPU node"


# --- availability ---------------------------------------------------------------------------------

def tensorrt_unavailable_reason() -> str | None:
    """Why TensorRT cannot run here (one line), or None when the package and a CUDA device are present."""
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # ImportError, or OSError/RuntimeError when its shared libraries are missing
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"the Python package 'tensorrt' cannot be imported ({detail})"
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            return None
    except Exception as exc:  # a broken driver install surfaces here, not as a clean False
        return f"no usable CUDA device ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    return "no CUDA device is visible (torch.cuda.is_available() is False)"


def require_tensorrt():
    """The ``tensorrt`` module, or a one-line MissingDependencyError saying what is missing."""
    reason = tensorrt_unavailable_reason()
    if reason is not None:
        raise MissingDependencyError(f"TensorRT cannot run on this node: {reason}; "
                                     f"the TensorRT stages need {GPU_IMAGE_HINT}")
    import tensorrt

    return tensorrt


def write_skip_notice(output_dir: str | os.PathLike, reason: str) -> None:
    """Stand in for a TensorRT output that was skipped on purpose (optional TensorRT, no GPU here)."""
    with staged_output(output_dir) as scratch:
        (scratch / SKIP_NOTICE).write_text(json.dumps({"kind": "visioncompress.skipped", "reason": reason}) + "\n")


def read_skip_notice(directory: str | os.PathLike) -> str | None:
    """The reason a TensorRT stage was skipped, or None for a real artifact."""
    path = Path(directory) / SKIP_NOTICE
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("reason", "skipped")


# --- step 1: calibrated QDQ ONNX (CPU) -------------------------------------------------------------

class CalibrationReader:
    """onnxruntime's CalibrationDataReader over the dataset's calibration split, and nothing else."""

    split = "calibration"

    def __init__(self, dataset: PreparedDataset, batch_size: int):
        self._dataset, self._batch_size = dataset, batch_size
        self.images_read = 0
        self.rewind()

    def get_next(self):
        batch = next(self._batches, None)
        if batch is None:
            return None
        self.images_read += len(batch[0])
        return {INPUT_NAME: batch[0]}

    def rewind(self) -> None:
        self._batches = self._dataset.batches(self.split, self._batch_size)


def _quantize_qdq(fp32_path: Path, qdq_path: Path, reader, config: TensorRTConfig, *, exclude=None,
                  op_types=None) -> list[str]:
    """``exclude(prepared_path) -> node names`` left in floating point (a detector's post-processing);
    ``op_types`` (e.g. ``WEIGHTED_OPS``): Q/DQ only on these operators' inputs, not their outputs, and only their
    tensors calibrated; None: every operator onnxruntime quantizes, inputs and outputs."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = fp32_path.with_name("prepared.onnx")
    quant_pre_process(str(fp32_path), str(prepared))
    excluded = list(exclude(prepared)) if exclude else []
    quantize_static(
        str(prepared), str(qdq_path), reader,
        quant_format=QuantFormat.QDQ,
        nodes_to_exclude=excluded,
        op_types_to_quantize=list(op_types) if op_types else None,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=getattr(CalibrationMethod, config.calibration_method),
        extra_options={
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            # TensorRT folds float biases into its INT8 kernels; an int32 bias DequantizeLinear is not its form.
            "QuantizeBias": False,
            **({"OpTypesToExcludeOutputQuantization": list(op_types)} if op_types else {}),
        },
    )
    return excluded


# TensorRT's recommended Q/DQ placement: on the inputs of the weighted layers only, not their outputs (TensorRT then
# fuses a conv with the activation after it and writes INT8 where the next layer's input quantizer asks for it).
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def qdq_params(config: TensorRTConfig) -> dict:
    """What a QDQ artifact records of how it was made: only calibration parameters shape it (the engine
    parameters belong to the build step)."""
    return {"CALIBRATION_BATCH_SIZE": config.calibration_batch_size,
            "CALIBRATION_METHOD": config.calibration_method, "quant_format": "QDQ",
            "activation_type": "QInt8 (symmetric)", "weight_type": "QInt8 (symmetric, per-channel)"}


def _drop_unused_opsets(path: Path) -> None:
    # quant_pre_process declares every onnxruntime domain; keep only the standard one and those nodes use.
    import onnx

    model = onnx.load(str(path))
    used = {node.domain for node in model.graph.node} | {""}
    kept = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.save(model, str(path))


def make_qdq_onnx(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, output_dir: str | os.PathLike,
                  config: TensorRTConfig) -> ModelMetadata:
    """FP32 model -> ONNX with symmetric INT8 Q/DQ (per-channel weights), calibrated on training data."""
    import onnx
    import torch

    model, parent, dataset = load_inputs(model_dir, dataset_dir)
    example = torch.from_numpy(dataset.example_input(1))
    reader = CalibrationReader(dataset, config.calibration_batch_size)
    log.info("QDQ ONNX for TensorRT: INT8 symmetric activations (%s), per-channel INT8 weights, "
             "%d calibration images in batches of %d", config.calibration_method,
             dataset.manifest.splits.get("calibration", 0), config.calibration_batch_size)
    metadata = derived_metadata(parent, model_dir, stage=QDQ_STAGE, precision="int8", config=config, fmt="onnx")
    metadata.params = qdq_params(config)
    with tempfile.TemporaryDirectory() as tmp, staged_output(output_dir) as scratch:
        fp32 = export_onnx(model, example, Path(tmp) / "fp32.onnx")
        target = scratch / metadata.file_name
        _quantize_qdq(fp32, target, reader, config)
        _drop_unused_opsets(target)
        onnx.checker.check_model(str(target))
        metadata.metrics = {"calibration_images": reader.images_read}
        write_model_metadata(scratch, metadata)
    log.info("QDQ ONNX model written to %s (%d calibration images; load with %s)", output_dir,
             reader.images_read, metadata.load_call)
    return metadata


# --- step 2: TensorRT engine (GPU) ----------------------------------------------------------------

_LOGGER = None


def tensorrt_logger():
    """One process-wide TensorRT logger (TensorRT expects builders and runtimes to share it)."""
    global _LOGGER
    if _LOGGER is None:
        trt = require_tensorrt()
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def _parse_onnx(trt, builder, onnx_path: Path):
    # TensorRT 10 networks are always explicit-batch (the EXPLICIT_BATCH flag is deprecated and ignored).
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, tensorrt_logger())
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors or 'no detail given'}")
    # The parser must stay alive as long as the network it filled.
    return network, parser


def _set_precision(trt, builder_config, config: TensorRTConfig) -> str:
    """Enable INT8 (and FP16 fallback); returns a description for the log."""
    flags = trt.BuilderFlag
    if hasattr(flags, "INT8"):  # TensorRT 10: weakly typed network, Q/DQ layers run INT8 once INT8 is on
        builder_config.set_flag(flags.INT8)
        if config.fp16_fallback:
            builder_config.set_flag(flags.FP16)
            return "INT8 from Q/DQ, FP16 fallback"
        return "INT8 from Q/DQ, FP32 fallback"
    # TensorRT 11 removed the precision flags: networks are strongly typed and the Q/DQ nodes alone select INT8.
    if config.fp16_fallback:
        log.warning("FP16_FALLBACK has no effect with TensorRT %s: layers without Q/DQ keep the ONNX model's FP32",
                    trt.__version__)
    return "INT8 from Q/DQ (strongly typed), FP32 elsewhere"


def build_engine(qdq_model_dir: str | os.PathLike, output_dir: str | os.PathLike,
                 config: TensorRTConfig) -> ModelMetadata:
    """QDQ ONNX model artifact -> serialised TensorRT engine artifact (``model.engine``)."""
    trt = require_tensorrt()
    qdq_model_dir = Path(qdq_model_dir)
    parent = read_model_metadata(qdq_model_dir)
    if parent.format != "onnx" or parent.stage not in QDQ_STAGES:
        raise ArtifactError(f"{qdq_model_dir} is a {parent.format} model from stage {parent.stage!r}; "
                            f"the engine build needs a QDQ ONNX model from stage {' or '.join(QDQ_STAGES)}")
    builder = trt.Builder(tensorrt_logger())
    network, _parser = _parse_onnx(trt, builder, qdq_model_dir / parent.file_name)
    if network.num_inputs != 1:
        raise ArtifactError(f"{qdq_model_dir}: expected one network input, found {network.num_inputs}")
    input_name = network.get_input(0).name

    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mb * 2**20)
    precision = _set_precision(trt, builder_config, config)
    sample = (parent.channels, parent.input_size, parent.input_size)
    shapes = [(batch, *sample) for batch in config.batch_profile()]
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *shapes)
    builder_config.add_optimization_profile(profile)
    log.info("building TensorRT %s engine: %s, input %r min/opt/max %s, workspace %d MiB", trt.__version__,
             precision, input_name, shapes, config.workspace_mb)

    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise ArtifactError(f"TensorRT could not build an engine from {qdq_model_dir} (its log above says why)")
    engine_bytes = bytes(serialized)
    engine = trt.Runtime(tensorrt_logger()).deserialize_cuda_engine(engine_bytes)
    if engine is None:
        raise ArtifactError("the engine TensorRT just built does not deserialise with tensorrt.Runtime")

    metadata = derived_metadata(parent, qdq_model_dir, stage=ENGINE_STAGE, precision="int8", config=config,
                                fmt="tensorrt-engine")
    metadata.params.update({"tensorrt_version": trt.__version__, "input_name": input_name,
                            "input_shapes_min_opt_max": [list(s) for s in shapes], "precision_mode": precision})
    with staged_output(output_dir) as scratch:
        (scratch / metadata.file_name).write_bytes(engine_bytes)
        write_model_metadata(scratch, metadata)
    log.info("TensorRT engine (%.2f MiB) written to %s (load with %s)", len(engine_bytes) / 2**20, output_dir,
             metadata.load_call)
    return metadata


__all__ = [
    "CalibrationReader", "build_engine", "make_qdq_onnx", "read_skip_notice", "require_tensorrt",
    "tensorrt_logger", "tensorrt_unavailable_reason", "write_skip_notice",
]
