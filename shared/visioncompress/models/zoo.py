"""Classification models by name from a platform (torchvision or timm), with the head sized to the dataset."""

from __future__ import annotations

import functools
import re

from visioncompress.errors import ConfigError, MissingDependencyError
from visioncompress.log import get_logger

log = get_logger("models")


@functools.lru_cache(maxsize=1)
def classification_model_names() -> tuple[str, ...]:
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


def _replace_last_linear(model, num_classes: int) -> None:
    import torch.nn as nn

    parent_name, last = None, None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            parent_name, last = name, module
    if last is None:
        raise ConfigError("MODEL", type(model).__name__, "a model whose classifier ends in nn.Linear")
    if last.out_features == num_classes:
        return
    *path, attr = parent_name.split(".")
    owner = model
    for part in path:
        owner = getattr(owner, part)
    setattr(owner, attr, nn.Linear(last.in_features, num_classes, bias=last.bias is not None))


PLATFORMS = ("torchvision", "timm")
# OpenMMLab detectors (visioncompress.detection.mm, in the detection image): MODEL is a config name the package ships.
MM_PLATFORMS = ("mmdet", "mmyolo")
# The detection pipelines that take them.
MM_PIPELINES = ("detect_distill", "detect_prune", "detect_ptq_onnx", "detect_ptq_openvino", "detect_ptq_tensorrt",
                "detect_qat_openvino")
_MM_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*_(coco|voc0712|voc|lvis|cityscapes|objects365)(-[\w.-]+)?(\.py)?$")


def _mm_installed() -> bool:
    import importlib.util

    return any(importlib.util.find_spec(p) is not None for p in MM_PLATFORMS)


def is_mm_model_name(name: str) -> bool:
    """An MMDetection/MMYOLO config name: one the installed packages ship, or (without them, e.g. where a job file
    is only mapped) a name in their form (``<model>_<schedule>_coco``); no mm import either way."""
    if _mm_installed():
        from visioncompress.detection.mm.configs import find_config

        return bool(name) and find_config(str(name), "") is not None
    return bool(_MM_NAME.match(str(name or "")))


def check_mm_model_name(parameter: str, name: str, platform: str) -> None:
    """``name`` is a config the installed ``platform`` package ships (the form only where mm is not installed)."""
    if not _mm_installed():
        if not _MM_NAME.match(str(name or "")):
            raise ConfigError(parameter, name, f"an {platform} config name, e.g. retinanet_r50_fpn_1x_coco, "
                              "yolox_tiny_fast_8xb8-300e_coco, rtmdet_tiny_8xb32-300e_coco")
        return
    from visioncompress.detection.mm.configs import resolve_config_path

    resolve_config_path(name, parameter, platform)


def timm_model_names() -> tuple[str, ...]:
    try:
        import timm
    except ImportError:
        return ()
    return tuple(timm.list_models())


def check_model_name(parameter: str, name: str, platform: str) -> None:
    """``name`` is a classification model of ``platform`` (the form only: no weights are fetched)."""
    if platform == "timm":
        try:
            import timm
        except ImportError as exc:
            raise MissingDependencyError(f"{parameter}={name!r} with PLATFORM=timm needs the timm package "
                                         "(pip install timm)") from exc
        if not timm.is_model(name):
            close = [n for n in timm.list_models(f"*{name.split('_')[0]}*")[:8]]
            raise ConfigError(parameter, name, "a timm model name (timm.list_models())"
                              + (f", e.g. {', '.join(close)}" if close else ""))
    elif name not in classification_model_names():
        raise ConfigError(parameter, name, "a torchvision classification model name (torchvision.models.list_models())")


def _build_timm(name: str, num_classes: int, *, pretrained: bool, input_size: int):
    import timm

    check_model_name("MODEL", name, "timm")
    try:
        try:  # ViT-style models fix their position embeddings to the input size
            model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, img_size=input_size)
        except TypeError:  # a CNN: no img_size argument
            model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes)
    except (OSError, RuntimeError, ValueError) as exc:
        if not pretrained:
            raise
        raise MissingDependencyError(
            f"PRETRAINED=True: could not fetch timm's weights for {name} ({str(exc).splitlines()[0][:200]}). "
            "Give the node access to the Hugging Face hub or an HF_HOME cache, or set PRETRAINED=False."
        ) from exc
    if pretrained:
        log.info("loaded timm's pretrained weights for %s (head re-initialised for %d classes)", name, num_classes)
    return model


def build_classifier(name: str, num_classes: int, *, pretrained: bool = False, input_size: int = 224,
                     platform: str = "torchvision"):
    """A classifier of ``platform`` for ``num_classes``; pretrained weights if ``pretrained`` (a download)."""
    import torchvision

    if platform == "timm":
        return _build_timm(name, num_classes, pretrained=pretrained, input_size=input_size)
    if name not in classification_model_names():
        raise ConfigError("MODEL", name, "a torchvision classification model name (torchvision.models.list_models())")
    kwargs = {}
    if name.startswith("vit_"):
        kwargs["image_size"] = input_size  # ViTs fix their position embeddings to the input size
    if not pretrained:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    try:
        model = torchvision.models.get_model(name, weights="DEFAULT")
    except Exception as exc:
        raise MissingDependencyError(
            f"PRETRAINED=True: could not load ImageNet weights for {name} ({exc}). "
            "Give the node internet access or a TORCH_HOME cache, or set PRETRAINED=False."
        ) from exc
    log.info("loaded ImageNet weights for %s", name)
    _replace_last_linear(model, num_classes)
    return model
