"""Classification models by torchvision name, with the head sized to the dataset."""

from __future__ import annotations

import functools

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


def build_classifier(name: str, num_classes: int, *, pretrained: bool = False, input_size: int = 224):
    """A torchvision classifier for ``num_classes``; ImageNet weights if ``pretrained`` (needs a download)."""
    import torchvision

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
