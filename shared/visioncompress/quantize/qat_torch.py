"""PyTorch CPU quantization-aware training (FX graph mode), saved as TorchScript INT8.

The FP32 model is prepared with fake quantization (``prepare_qat_fx``, the engine's default QAT
qconfig mapping: per-channel symmetric weights, affine activations), trained with the shared loop,
then converted to real INT8 kernels (``convert_fx``) and frozen as TorchScript, which
``torch.jit.load(path)`` runs on CPU.

Checkpoints: the prepared graph's ``state_dict`` holds the weights, the fake-quant scales and zero
points and the observers' running ranges. Preparing the same FP32 model again gives the same graph,
and torch's FakeQuantize/observer modules resize their buffers on load, so the shared loop's
state_dict checkpoints, resume and best-state reload work unchanged.
"""

from __future__ import annotations

import copy
import dataclasses
import os

from visioncompress.artifacts import ModelMetadata
from visioncompress.config import TrainConfig, to_spec
from visioncompress.config.qat import OpenVinoQATConfig, TorchQATConfig
from visioncompress.log import get_logger
from visioncompress.models import save_torchscript
from visioncompress.quantize._common import derived_metadata, load_inputs
from visioncompress.train.engine import ClassificationTask, TrainResult, fit

log = get_logger("quantize.qat_torch")

# TrainConfig parameters that QAT training uses (the others describe the FP32 fine-tune before it).
LOOP_PARAMETERS = ("OPTIMIZER", "CRITERION", "VALIDATE", "VALIDATION_INTERVAL", "SEED")


def qat_train_config(train_config: TrainConfig, config: TorchQATConfig | OpenVinoQATConfig) -> TrainConfig:
    """The fine-tune settings (optimizer, criterion, validation, seed) with QAT's batch size."""
    return dataclasses.replace(train_config, batch_size=config.batch_size)


def qat_params(train_config: TrainConfig, config: TorchQATConfig | OpenVinoQATConfig) -> dict:
    """What the QAT stage ran with: its own parameters and the loop settings it took from TrainConfig."""
    loop = {k: v for k, v in to_spec(train_config).items() if k in LOOP_PARAMETERS}
    return {**loop, **to_spec(config)}


def qat_metrics(result: TrainResult) -> dict:
    return {"val_top1": result.best_val_top1, "best_epoch": result.best_epoch, "history": result.history,
            "resumed_from_epoch": result.resumed_from_epoch}


def qat_task(dataset, criterion: str, teacher=None, distill_config=None):
    """The QAT training task and its companion modules: plain labels, or with ``teacher`` (a torch model, e.g.
    the FP32 model before quantization) knowledge distillation with DistillConfig's LAMBDA and TEMPERATURE."""
    if teacher is None:
        return ClassificationTask(dataset, criterion), ()
    from visioncompress.distill.classification import kd_task

    log.info("QAT distilled from the FP32 teacher (LAMBDA %s, TEMPERATURE %s)", distill_config.lambda_,
             distill_config.temperature)
    return kd_task(dataset, teacher, lambda_=distill_config.lambda_, temperature=distill_config.temperature)


def prepare_qat(model, example, engine: str):
    """A training-mode copy of ``model`` with fake quantization inserted for ``engine`` (ReLU6 after a convolution
    fused into it, as for PTQ: ``quantize.torch.qconfig_mapping``)."""
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    from visioncompress.quantize.torch import qconfig_mapping

    model, mapping = qconfig_mapping(copy.deepcopy(model).train(), engine, qat=True)
    return prepare_qat_fx(model, mapping, (example,))


def qat_torch(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, output_dir: str | os.PathLike,
              config: TorchQATConfig, train_config: TrainConfig, *,
              checkpoint_dir: str | os.PathLike | None = None, teacher=None, distill_config=None) -> ModelMetadata:
    """``teacher`` (with ``distill_config``): train against the teacher's soft targets too (``qat_task``)."""
    import torch
    from torch.ao.quantization.quantize_fx import convert_fx

    from visioncompress.quantize.torch import resolve_engine

    model, parent, dataset = load_inputs(model_dir, dataset_dir)
    config, choice = resolve_engine(config)
    torch.backends.quantized.engine = config.engine
    example = torch.from_numpy(dataset.example_input(1))
    prepared = prepare_qat(model, example, config.engine)
    log.info("torch QAT (engine %s): %d epoch(s) at learning rate %g, batch %d", config.engine, config.qat_epochs,
             config.qat_learning_rate, config.batch_size)
    qat_config = qat_train_config(train_config, config)
    task, companions = qat_task(dataset, qat_config.criterion, teacher, distill_config)
    result = fit(prepared, task, qat_config, epochs=config.qat_epochs, learning_rate=config.qat_learning_rate,
                 companions=companions, checkpoint_dir=checkpoint_dir, name="qat_torch")
    quantized = convert_fx(prepared.eval())
    with torch.inference_mode():
        scripted = torch.jit.freeze(torch.jit.trace(quantized, example, check_trace=False).eval())
    metadata = derived_metadata(parent, model_dir, stage="qat_torch", precision="int8", config=config,
                                fmt="torchscript")
    params = qat_params(train_config, config)
    metadata = metadata.derive(params={**params, "INT8_ENGINE": choice} if choice else params,
                               metrics=qat_metrics(result))
    metadata = save_torchscript(scripted, metadata, output_dir)
    log.info("QAT TorchScript INT8 model written to %s (val top-1 %s; load with %s)", output_dir,
             result.best_val_top1, metadata.load_call)
    return metadata


__all__ = ["prepare_qat", "qat_task", "qat_torch"]
