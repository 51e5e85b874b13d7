"""OpenVINO INT8 detectors through NNCF quantization-aware training of the detector's core.

The core (backbone + FPN + head) gets NNCF's quantizers from the calibration split and trains
with the detector's own losses on its raw outputs; it is then converted to OpenVINO and the
floating-point post-processing graph (``detection.export``: decoding, top-k, NMS as OpenVINO's NMS op)
is attached to its outputs, so the IR goes from image batch to detections. Resume works as for
classification QAT: the quantizer layout is kept beside the checkpoint.

An OpenMMLab detector (PLATFORM mmdet / mmyolo, an ``mm-module`` artifact) goes to
``detection.mm.stage.qat_mm_stage``: the quantizers go into the mm model's own modules, it trains with the mm
Runner and its own losses, and its end-to-end export (NMS inside) is the IR.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from visioncompress.artifacts import ModelMetadata, read_model_metadata, staged_output, write_model_metadata
from visioncompress.config import TrainConfig
from visioncompress.config.qat import OpenVinoQATConfig
from visioncompress.detection.artifacts import (
    calibration_images, export_info, exported_metadata, load_detection_inputs,
)
from visioncompress.detection.export import OUTPUTS, attach_post_openvino, export_post, fp_node_names, \
    resolve_settings
from visioncompress.detection.benchmark import measure_map
from visioncompress.detection.finetune import train_with
from visioncompress.detection.heads import DetectorCore, decode, dense_losses, feature_shapes, require_one_stage
from visioncompress.detection.mm.stage import MM_FORMAT
from visioncompress.log import get_logger
from visioncompress.quantize.openvino import convert_to_openvino
from visioncompress.quantize.qat_openvino import CALIBRATION_BATCH, _write_json, use_nncf_torch_kernels
from visioncompress.quantize.qat_torch import qat_params

log = get_logger("detection.qat_openvino")
STAGE = "qat_openvino"


class _CoreRunner:
    """Runs a (quantized) torch core and decodes, for validation mAP during QAT."""

    def __init__(self, core, detector, insize: int, levels):
        self.core, self.detector, self.insize, self.levels = core, detector, insize, levels

    def predict(self, batch):
        with torch.no_grad():
            return decode(self.detector, self.insize, self.levels, self.core(torch.as_tensor(batch)))


def _quantize_core(core, data, config: OpenVinoQATConfig, checkpoint_dir: Path | None):
    import nncf
    import nncf.torch

    layout = checkpoint_dir / f"{STAGE}-nncf.json" if checkpoint_dir else None
    if layout and layout.is_file() and (checkpoint_dir / f"{STAGE}-last.pt").is_file():
        log.info("restoring NNCF quantizers from %s", layout)
        return nncf.torch.load_from_config(core, json.loads(layout.read_text()))
    batches = [torch.from_numpy(x) for x in calibration_images(data, CALIBRATION_BATCH, limit=config.subset_size)]
    log.info("NNCF calibration of the detector core on %d images", sum(len(b) for b in batches))
    quantized = nncf.quantize(core, nncf.Dataset(batches), subset_size=len(batches),
                              model_type=nncf.ModelType.TRANSFORMER if config.transformer else None)
    if layout:
        _write_json(layout, nncf.torch.get_config(quantized))
    return quantized


def qat_openvino_detector(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike,
                          output_dir: str | os.PathLike, config: OpenVinoQATConfig, train_config: TrainConfig, *,
                          checkpoint_dir: str | os.PathLike | None = None, post=None) -> ModelMetadata:
    import openvino as ov

    if read_model_metadata(model_dir).format == MM_FORMAT:  # PLATFORM mmdet / mmyolo
        from visioncompress.detection.mm.stage import qat_mm_stage

        return qat_mm_stage(model_dir, dataset_dir, output_dir, config, train_config, post)
    kernels = use_nncf_torch_kernels()
    detector, parent, data = load_detection_inputs(model_dir, dataset_dir)
    require_one_stage(detector, "OpenVINO QAT")
    settings = resolve_settings(detector, post)
    insize = parent.input_size
    levels = [tuple(s[-2:]) for s in feature_shapes(detector, insize)]
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
    core = _quantize_core(DetectorCore(detector).eval(), data, config, checkpoint_dir)
    log.info("NNCF QAT of %s (%s kernels): %d epoch(s) at learning rate %g, batch %d", parent.architecture, kernels,
             config.qat_epochs, config.qat_learning_rate, config.batch_size)

    def loss_fn(model, images, targets):
        return dense_losses(detector, images, levels, model(images), targets)

    def val_map(model):
        return measure_map(_CoreRunner(model.eval(), detector, insize, levels), data, split="val")[0]["mAP"]

    qat_config = TrainConfig(**{**train_config.__dict__, "batch_size": config.batch_size})
    result = train_with(core, data, qat_config, epochs=config.qat_epochs, learning_rate=config.qat_learning_rate,
                        name=STAGE, checkpoint_dir=checkpoint_dir, loss_fn=loss_fn, evaluate=val_map,
                        warmup=False)
    ov_core = convert_to_openvino(core.eval(), torch.rand(1, 3, insize, insize))
    with tempfile.TemporaryDirectory() as tmp:
        post_onnx = export_post(detector, insize, settings, Path(tmp) / "post.onnx")
        fp_nodes = fp_node_names(post_onnx)
        ov_model = attach_post_openvino(ov_core, post_onnx, OUTPUTS)
    metadata = exported_metadata(parent, model_dir, stage=STAGE, precision="int8", fmt="openvino-ir",
                                 params=qat_params(train_config, config),
                                 info=export_info(settings, fp_nodes, quantized_by="NNCF QAT (core only)"))
    metadata = metadata.derive(metrics={"val_mAP": result.best_val_map, "history": result.history})
    with staged_output(output_dir) as scratch:
        ov.save_model(ov_model, str(scratch / metadata.file_name), compress_to_fp16=False)
        write_model_metadata(scratch, metadata)
    log.info("QAT INT8 end-to-end OpenVINO detector written to %s (val mAP %s)", output_dir, result.best_val_map)
    return metadata
