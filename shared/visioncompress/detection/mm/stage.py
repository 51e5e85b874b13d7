"""The pipeline stages for OpenMMLab detectors (PLATFORM mmdet / mmyolo): fine-tune, distill, prune.

``visioncompress.detection.{finetune,distill,prune}`` hand over here when the model is an OpenMMLab one, so a
pipeline runs the same steps whatever the platform. Each stage:

* writes the dataset artifact out as the COCO folder an mm Runner reads (images at ``insize``, the same
  splits and boxes every other detector trains and is scored on);
* builds MODEL / TEACHER_MODEL from the config of that name the packages ship (``configs.find_config``),
  with ``num_classes`` from the dataset; PRETRAINED downloads the COCO checkpoint the package's metafile lists
  (an error saying so when the node is offline); CUSTOM_MODEL_PATH / CUSTOM_TEACHER_PATH load every tensor
  that fits and keep the rest (the head of another class count) at their initial values;
* trains with the user's settings (``runner.TrainSettings.from_train_config``);
* writes an ``mm-module`` model artifact: ``model.pt`` (the ``MMDetector`` wrapper), ``model.state.pt``
  (weights only: what a later stage loads) and ``model.json``. The benchmark measures it with
  ``detection.runners.MMDetectorRunner``: pycocotools mAP on the dataset artifact's test split, as for every
  detector.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from visioncompress.artifacts import ModelMetadata, read_model_metadata, staged_output, write_model_metadata
from visioncompress.config import ModelConfig, TrainConfig, to_spec
from visioncompress.errors import ArtifactError, ConfigError, MissingDependencyError, TrainingError
from visioncompress.log import get_logger

log = get_logger("detection.mm.stage")
MM_FORMAT = "mm-module"


# ---- data -----------------------------------------------------------------------------------------------

def coco_folder(dataset_dir, root, splits=("train", "val", "test")) -> tuple[Path, object]:
    """The dataset artifact as ``root/images/*.png`` + ``root/annotations/instances_<split>.json`` at insize."""
    import numpy as np
    from PIL import Image

    from visioncompress.detection.coco import to_coco
    from visioncompress.detection.data import load_detection_dataset

    data = load_detection_dataset(dataset_dir)
    manifest = data.manifest
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    for split in splits:
        if not manifest.splits.get(split):
            continue
        boxes, labels, names = [], [], []
        for index in range(data.size(split)):
            pixels, target = data.item(split, index)
            name = f"{split}_{index:06d}.png"
            Image.fromarray(np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())).save(root / "images" / name)
            boxes.append(target["boxes"].numpy())
            labels.append(target["labels"].numpy())
            names.append(name)
        coco = to_coco(boxes, labels, list(manifest.classes), manifest.input_size, names)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    return root, data


# ---- models ---------------------------------------------------------------------------------------------

def _fetch_pretrained(config_path: Path, parameter: str) -> Path:
    from .configs import weights_url

    url = weights_url(config_path)
    if url is None:
        raise ConfigError("PRETRAINED", True, f"False for {parameter}={config_path.stem}: its package lists no "
                          "checkpoint for this config; give CUSTOM_MODEL_PATH / CUSTOM_TEACHER_PATH instead")
    import torch.hub

    target = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(target), progress=False)
        except Exception as exc:  # noqa: BLE001 - any network failure means the same to the user
            raise MissingDependencyError(
                f"PRETRAINED=True: could not download the COCO checkpoint of {config_path.stem} from {url} "
                f"({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}); this node is offline or "
                "cannot reach download.openmmlab.com. Put the file in $TORCH_HOME/hub/checkpoints, give it as "
                "CUSTOM_MODEL_PATH / CUSTOM_TEACHER_PATH, or set PRETRAINED=False (random weights)") from exc
    log.info("PRETRAINED: %s's COCO checkpoint %s", config_path.stem, target.name)
    return target


def initial_model(name: str, platform: str, num_classes: int, *, pretrained: bool, checkpoint: str = "",
                  seed: int = 0, parameter: str = "MODEL"):
    """(mm model, its MMConfig): MODEL's config with num_classes, weights from checkpoint / PRETRAINED / seed."""
    import torch

    from .configs import load_model_config
    from .model import load_weights
    from .runner import build_model

    cfg = load_model_config(name, parameter, num_classes, platform)
    torch.manual_seed(seed)
    model = build_model(cfg.model)
    source = checkpoint or (_fetch_pretrained(Path(cfg.path), parameter) if pretrained else "")
    if source:
        from visioncompress.storage.s3 import localized

        with localized(str(source)) as local:
            load_weights(model, mm_checkpoint(local) if Path(local).is_dir() else local)
    return model, cfg


def _iterations(coco_root: Path, batch_size: int, epochs: int) -> tuple[int, int]:
    from .configs import coco_info
    from .runner import total_iters

    return total_iters(coco_info(coco_root), batch_size, epochs, None)


def train_detector(model, family: str, coco_root: Path, work_dir: Path, train_config: TrainConfig, *, epochs: int,
                   lr: float | None = None) -> dict:
    """Plain supervised training of an mm detector (``family`` mmdet / mmyolo) with the user's settings, its own
    losses; returns what it measured."""
    from .configs import coco_info
    from .runner import TrainSettings, make_runner, train

    iters, per_epoch = _iterations(coco_root, train_config.batch_size, epochs)
    settings = TrainSettings.from_train_config(train_config, lr=lr, per_epoch=per_epoch)
    runner = make_runner(model, coco_info(coco_root), family, work_dir, settings=settings,
                         batch_size=train_config.batch_size, insize=_insize(coco_root), iters=iters,
                         per_epoch=per_epoch)
    seconds = train(runner)
    model.cpu()
    return {"iterations": runner.iter, "seconds_per_iter": seconds, "lr": settings.lr,
            "optimizer": settings.optimizer, "lr_scheduler": settings.lr_scheduler}


def _insize(coco_root: Path) -> int:
    info = json.loads((Path(coco_root) / "annotations" / "instances_train.json").read_text())
    return int(info["images"][0]["width"])


def _val_map(wrapper, coco_root: Path) -> float | None:
    from .evaluate import evaluate_mm

    if not (Path(coco_root) / "annotations" / "instances_val.json").is_file():
        return None
    return round(evaluate_mm(wrapper, coco_root, "val")["mAP"] * 100, 2)


def _percent(metrics: dict, split: str) -> float | None:
    value = (metrics or {}).get(split, {}).get("mAP")
    return None if value is None else round(value * 100, 2)


def write_mm_artifact(wrapper, metadata: ModelMetadata, output_dir) -> ModelMetadata:
    from .model import save_model

    metadata = metadata.derive(format=MM_FORMAT)
    with staged_output(output_dir) as scratch:
        save_model(wrapper, Path(scratch) / metadata.file_name)
        metadata = write_model_metadata(scratch, metadata)
    return metadata


def _copy_mm_artifact(model_path: Path, metadata: ModelMetadata, output_dir) -> ModelMetadata:
    from .model import state_path

    metadata = metadata.derive(format=MM_FORMAT)
    with staged_output(output_dir) as scratch:
        shutil.copy2(model_path, Path(scratch) / metadata.file_name)
        shutil.copy2(state_path(model_path), state_path(Path(scratch) / metadata.file_name))
        metadata = write_model_metadata(scratch, metadata)
    return metadata


def mm_checkpoint(model_dir) -> Path:
    """The weights-only state dict of an mm-module artifact (its checksums verified)."""
    from .model import state_path

    metadata = read_model_metadata(model_dir)
    if metadata.format != MM_FORMAT:
        raise ArtifactError(f"{model_dir} holds a {metadata.format} model; an OpenMMLab (PLATFORM mmdet/mmyolo) "
                            "stage needs an mm-module artifact (the fine-tune, distill or prune output of an mm model)")
    return state_path(Path(model_dir) / metadata.file_name)


def _base_metadata(data, model_name: str, stage: str, params: dict, parent: dict, metrics: dict) -> ModelMetadata:
    manifest = data.manifest
    return ModelMetadata(task="detection", architecture=model_name, classes=list(manifest.classes),
                         input_size=manifest.input_size, channels=3, mean=manifest.mean, std=manifest.std,
                         format=MM_FORMAT, precision="fp32", stage=stage, params=params, parent=parent,
                         metrics=metrics)


# ---- the stages -----------------------------------------------------------------------------------------

def finetune_mm(dataset_dir, output_dir, model_config: ModelConfig, train_config: TrainConfig) -> ModelMetadata:
    from .model import MMDetector

    with tempfile.TemporaryDirectory(prefix="vc-mm-") as tmp:
        root, data = coco_folder(dataset_dir, Path(tmp) / "coco")
        manifest = data.manifest
        model, cfg = initial_model(model_config.model, model_config.platform, manifest.num_classes,
                                   pretrained=model_config.pretrained, checkpoint=model_config.custom_model_path,
                                   seed=train_config.seed)
        trained = {}
        if train_config.training and train_config.finetune_epochs > 0:
            log.info("fine-tuning %s (%s) for %d epoch(s)", model_config.model, model_config.platform,
                     train_config.finetune_epochs)
            trained = train_detector(model, cfg.family, root, Path(tmp) / "runner", train_config,
                                     epochs=train_config.finetune_epochs)
        else:
            log.info("TRAINING is off: using %s as it is", model_config.custom_model_path or model_config.model)
        wrapper = MMDetector(model, manifest.classes, manifest.input_size, cfg.family, cfg.model)
        val_map = _val_map(wrapper, root)
        metadata = _base_metadata(
            data, model_config.model, "finetune", {**to_spec(model_config), **to_spec(train_config),
                                                   "mm_config": Path(cfg.path).name, "mm_family": cfg.family},
            {"dataset": str(dataset_dir), "dataset_source": manifest.source}, {"val_mAP": val_map, **trained})
        metadata = write_mm_artifact(wrapper, metadata, output_dir)
    log.info("FP32 %s detector written to %s (val mAP %s)", cfg.family, output_dir, val_map)
    return metadata


def distill_mm_stage(dataset_dir, output_dir, student_config: ModelConfig, train_config: TrainConfig, config, *,
                     teacher_dir=None) -> ModelMetadata:
    """METHOD pkd / cwd (MMDetection) or pkd_yolo (MMYOLO) through MMRazor, EPOCHS at LR with the user's
    optimizer, schedule, batch, workers, AMP and device; the teacher fine-tuned first when TRAINING."""
    from .distill import distill_mm
    from .model import MMDetector, save_model
    from .runner import TrainSettings

    teacher_platform = config.teacher_platform or student_config.platform
    with tempfile.TemporaryDirectory(prefix="vc-mm-") as tmp:
        tmp = Path(tmp)
        root, data = coco_folder(dataset_dir, tmp / "coco")
        manifest = data.manifest
        teacher_result: dict = {}
        if teacher_dir is not None:
            teacher_ckpt, teacher_source = mm_checkpoint(teacher_dir), str(teacher_dir)
        else:
            teacher, teacher_cfg = initial_model(config.teacher_model, teacher_platform, manifest.num_classes,
                                                 pretrained=student_config.pretrained,
                                                 checkpoint=config.custom_teacher_path, seed=config.seed,
                                                 parameter="TEACHER_MODEL")
            if train_config.training and train_config.finetune_epochs > 0:
                log.info("fine-tuning the teacher (%s) for %d epoch(s)", config.teacher_model,
                         train_config.finetune_epochs)
                teacher_result = train_detector(teacher, teacher_cfg.family, root, tmp / "teacher", train_config,
                                                epochs=train_config.finetune_epochs)
            wrapper = MMDetector(teacher, manifest.classes, manifest.input_size, teacher_cfg.family, teacher_cfg.model)
            teacher_result["teacher_val_mAP"] = _val_map(wrapper, root)
            save_model(wrapper, tmp / "teacher" / "teacher.pt")
            from .model import state_path

            teacher_ckpt = state_path(tmp / "teacher" / "teacher.pt")
            teacher_source = config.custom_teacher_path or config.teacher_model
        student_ckpt = ""
        if student_config.custom_model_path or student_config.pretrained:
            student, student_cfg = initial_model(student_config.model, student_config.platform,
                                                 manifest.num_classes, pretrained=student_config.pretrained,
                                                 checkpoint=student_config.custom_model_path, seed=config.seed)
            save_model(MMDetector(student, manifest.classes, manifest.input_size, student_cfg.family,
                                  student_cfg.model), tmp / "student" / "student.pt")
            from .model import state_path

            student_ckpt = state_path(tmp / "student" / "student.pt")
        iters, per_epoch = _iterations(root, train_config.batch_size, config.epochs)
        settings = TrainSettings.from_train_config(train_config, lr=config.lr, weight_decay=config.weight_decay,
                                                   per_epoch=per_epoch)
        settings.seed = config.seed
        result = distill_mm(student_config.model, config.teacher_model, teacher_ckpt, config.method, root,
                            tmp / "distill", epochs=config.epochs, batch_size=train_config.batch_size,
                            insize=manifest.input_size, settings=settings, platform=student_config.platform,
                            teacher_platform=teacher_platform, student_checkpoint=student_ckpt or None)
        metadata = _base_metadata(
            data, student_config.model, "distill",
            {**to_spec(student_config), **to_spec(train_config), **to_spec(config),
             "mm_config": Path(result["student_config"]).name},
            {"dataset": str(dataset_dir), "dataset_source": manifest.source, "teacher": teacher_source},
            {"val_mAP": _percent(result["metrics"], "val"), "test_mAP": _percent(result["metrics"], "test"),
             "iterations": result["iterations"], "seconds_per_iter": result["seconds_per_iter"],
             "method": result["method"], "lr": settings.lr, **teacher_result})
        metadata = _copy_mm_artifact(Path(result["model_path"]), metadata, output_dir)
    log.info("distilled %s detector written to %s (val mAP %s)", student_config.platform, output_dir,
             metadata.metrics["val_mAP"])
    return metadata


def prune_mm_stage(model_dir, dataset_dir, output_dir, config, train_config: TrainConfig) -> ModelMetadata:
    """GroupFisher through MMRazor on the mm-module artifact: INTERVAL, NORM_TYPE, LR_RATIO, TARGET_FLOP_RATIO,
    EPOCHS, with the user's LEARNING_RATE, optimizer, batch, workers, AMP and device. A run that ends above
    TARGET_FLOP_RATIO writes nothing."""
    from .prune import prune_group_fisher_mm
    from .runner import TrainSettings

    checkpoint = mm_checkpoint(model_dir)
    parent = read_model_metadata(model_dir)
    with tempfile.TemporaryDirectory(prefix="vc-mm-") as tmp:
        tmp = Path(tmp)
        root, data = coco_folder(dataset_dir, tmp / "coco")
        if parent.num_classes != data.manifest.num_classes or parent.input_size != data.manifest.input_size:
            raise ArtifactError(f"model {model_dir} ({parent.num_classes} classes, {parent.input_size}px) does not "
                                f"match dataset {dataset_dir} ({data.manifest.num_classes} classes, "
                                f"{data.manifest.input_size}px)")
        iters, per_epoch = _iterations(root, train_config.batch_size, config.epochs)
        if config.interval > max(1, iters // 2):
            raise ConfigError("INTERVAL", config.interval, f"at most {max(1, iters // 2)}: pruning happens in the "
                              f"first half of the {iters} training iterations ({config.epochs} epoch(s) of "
                              f"{per_epoch})")
        settings = TrainSettings.from_train_config(train_config, per_epoch=per_epoch)
        result = prune_group_fisher_mm(
            parent.params.get("MODEL", parent.architecture), checkpoint, root, tmp / "prune",
            interval=config.interval, norm_type=config.norm_type, lr_ratio=config.lr_ratio,
            target_flop_ratio=config.target_flop_ratio, epochs=config.epochs, batch_size=train_config.batch_size,
            insize=parent.input_size, settings=settings, platform=parent.params.get("PLATFORM", ""))
        if not result["target_reached"]:
            raise TrainingError(
                f"GroupFisher ended at {result['flop_ratio']:.4f} of the FLOPs, above TARGET_FLOP_RATIO="
                f"{config.target_flop_ratio}, after {result['iterations']} iterations (one channel group pruned "
                f"every INTERVAL={config.interval} iterations); nothing was written. Raise EPOCHS or lower INTERVAL")
        metadata = parent.derive(
            stage="prune", params={**parent.params, **to_spec(config), **to_spec(train_config)},
            parent={"model": str(model_dir), "stage": parent.stage, "format": parent.format},
            metrics={k: result[k] for k in ("flops_before", "flops_after", "params_before", "params_after",
                                            "iterations", "pruning_iterations", "seconds_per_iter")}
            | {"flop_ratio": round(result["flop_ratio"], 4), "val_mAP": _percent(result["metrics"], "val"),
               "test_mAP": _percent(result["metrics"], "test"), "lr": settings.lr * config.lr_ratio})
        metadata = _copy_mm_artifact(Path(result["model_path"]), metadata, output_dir)
    log.info("pruned detector written to %s: FLOPs %.1fM -> %.1fM (%.3f), val mAP %s", output_dir,
             result["flops_before"] / 1e6, result["flops_after"] / 1e6, result["flop_ratio"],
             metadata.metrics["val_mAP"])
    return metadata


def quantize_mm_stage(model_dir, dataset_dir, output_dir, config, post=None, *, runtime: str) -> ModelMetadata:
    """``detect_ptq_onnx`` / ``detect_ptq_openvino`` / ``detect_ptq_tensorrt``'s CPU half on an mm-module artifact
    (``runtime`` "onnx", "openvino" or "tensorrt"): the end-to-end graph (``export.export_mm``) quantized by
    ``export.quantize_mm_onnx`` / ``quantize_mm_openvino`` / ``quantize_mm_qdq``, calibrated on the dataset
    artifact's calibration split; an artifact like the torchvision detectors' (``params.detection_export``; for
    TensorRT the QDQ model ``quantize.tensorrt.build_engine`` takes, stage ``qdq_onnx``)."""
    from visioncompress.config import to_spec
    from visioncompress.detection.artifacts import export_info, exported_metadata
    from visioncompress.quantize.onnx import _precision
    from visioncompress.quantize.tensorrt import QDQ_STAGE, qdq_params

    from .export import quantize_mm_onnx, quantize_mm_openvino, quantize_mm_qdq, resolve_settings
    from .model import load_model

    quantizers = {"onnx": quantize_mm_onnx, "openvino": quantize_mm_openvino, "tensorrt": quantize_mm_qdq}
    mm_checkpoint(model_dir)  # an mm-module artifact, checksums verified
    parent = read_model_metadata(model_dir)
    wrapper = load_model(Path(model_dir) / parent.file_name)
    settings = resolve_settings(wrapper, post)
    with tempfile.TemporaryDirectory(prefix="vc-mm-") as tmp:
        root, data = coco_folder(dataset_dir, Path(tmp) / "coco", splits=("calibration",))
        if parent.num_classes != data.manifest.num_classes or parent.input_size != data.manifest.input_size:
            raise ArtifactError(f"model {model_dir} ({parent.num_classes} classes, {parent.input_size}px) does not "
                                f"match dataset {dataset_dir} ({data.manifest.num_classes} classes, "
                                f"{data.manifest.input_size}px)")
        fmt = "openvino-ir" if runtime == "openvino" else "onnx"
        metadata = parent.derive(format=fmt)  # the file name of that format
        with staged_output(output_dir) as scratch:
            target = Path(scratch) / metadata.file_name
            done = quantizers[runtime](wrapper, root, target, config, settings, split="calibration")
            info = export_info(settings, done["fp_nodes"], quantized_by=done["quantized_by"])
            if runtime == "tensorrt":
                import onnx

                onnx.checker.check_model(str(target))
                metadata = exported_metadata(parent, model_dir, stage=QDQ_STAGE, precision="int8", fmt=fmt,
                                             params=qdq_params(config), info=info)
                metadata.metrics = {"calibration_images": done["calibration_images"]}
            else:
                metadata = exported_metadata(parent, model_dir, stage=f"quantize_{runtime}",
                                             precision=_precision(config) if runtime == "onnx" else "int8",
                                             fmt=fmt, params=to_spec(config), info=info)
            write_model_metadata(scratch, metadata)
    log.info("INT8 end-to-end %s detector (%s) written to %s", runtime, parent.architecture, output_dir)
    return metadata


def quantization_aware_training(wrapper, coco_root: Path, work_dir: Path, config, train_config: TrainConfig, *,
                                split: str = "calibration") -> dict:
    """NNCF's quantizers into ``wrapper.model`` (``export.insert_quantizers``, ranges from ``split``), then
    QAT_EPOCHS of training at QAT_LEARNING_RATE, BATCH_SIZE, with the user's optimizer, schedule, workers, AMP,
    device and seed (``train_detector``: the mm Runner and the detector's own losses). ``wrapper`` keeps the
    quantized model; returns what the training measured. NNCF's quantizers run its torch-native kernels unless
    $VC_NNCF_TORCH_KERNELS says otherwise (``quantize.qat_openvino.use_nncf_torch_kernels``)."""
    from visioncompress.quantize.qat_openvino import use_nncf_torch_kernels
    from visioncompress.quantize.qat_torch import qat_train_config

    from .export import insert_quantizers

    kernels = use_nncf_torch_kernels()
    wrapper.model = insert_quantizers(wrapper, coco_root, config, split=split)
    log.info("NNCF QAT of %s: %d epoch(s) at learning rate %g, batch %d", type(wrapper.model).__name__,
             config.qat_epochs, config.qat_learning_rate, config.batch_size)
    trained = train_detector(wrapper.model, wrapper.family, coco_root, work_dir,
                             qat_train_config(train_config, config), epochs=config.qat_epochs,
                             lr=config.qat_learning_rate)
    return {**trained, "nncf_kernels": kernels}


def qat_mm_stage(model_dir, dataset_dir, output_dir, config, train_config: TrainConfig, post=None) -> ModelMetadata:
    """``detect_qat_openvino`` on an mm-module artifact: ``quantization_aware_training`` (calibrated on the
    dataset artifact's calibration split, trained on its train split), then the end-to-end graph
    (``export.save_mm_openvino``: image batch to detections, NMS inside, the quantizers as FakeQuantize) as an
    OpenVINO IR; an artifact like ``quantize_mm_stage``'s, with the QAT model's validation mAP (in torch)."""
    from visioncompress.detection.artifacts import export_info, exported_metadata
    from visioncompress.quantize.qat_torch import qat_params

    from .export import resolve_settings, save_mm_openvino
    from .model import load_model

    mm_checkpoint(model_dir)  # an mm-module artifact, checksums verified
    parent = read_model_metadata(model_dir)
    wrapper = load_model(Path(model_dir) / parent.file_name)
    settings = resolve_settings(wrapper, post)
    with tempfile.TemporaryDirectory(prefix="vc-mm-") as tmp:
        tmp = Path(tmp)
        root, data = coco_folder(dataset_dir, tmp / "coco", splits=("train", "val", "calibration"))
        if parent.num_classes != data.manifest.num_classes or parent.input_size != data.manifest.input_size:
            raise ArtifactError(f"model {model_dir} ({parent.num_classes} classes, {parent.input_size}px) does not "
                                f"match dataset {dataset_dir} ({data.manifest.num_classes} classes, "
                                f"{data.manifest.input_size}px)")
        trained = quantization_aware_training(wrapper, root, tmp / "runner", config, train_config)
        val_map = _val_map(wrapper, root)
        metadata = parent.derive(format="openvino-ir")  # the file name of that format
        with staged_output(output_dir) as scratch:
            info = save_mm_openvino(wrapper, Path(scratch) / metadata.file_name, settings)
            metadata = exported_metadata(parent, model_dir, stage="qat_openvino", precision="int8",
                                         fmt=metadata.format, params=qat_params(train_config, config),
                                         info=export_info(settings, info["fp_nodes"],
                                                          quantized_by="NNCF QAT (mm Runner)"))
            metadata.metrics = {"val_mAP": val_map, "fake_quantize_ops": info["fake_quantize_ops"], **trained}
            write_model_metadata(scratch, metadata)
    log.info("QAT INT8 end-to-end OpenVINO detector (%s) written to %s (val mAP %s)", parent.architecture,
             output_dir, val_map)
    return metadata


__all__ = ["MM_FORMAT", "coco_folder", "distill_mm_stage", "finetune_mm", "initial_model", "mm_checkpoint",
           "prune_mm_stage", "qat_mm_stage", "quantization_aware_training", "quantize_mm_stage",
           "write_mm_artifact"]
