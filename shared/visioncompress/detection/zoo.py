"""Detection model zoo: torchvision detectors by name, built for a fixed square input.

Names are torchvision's builders (``fcos_resnet50_fpn``, ``retinanet_resnet50_fpn(_v2)``,
``ssdlite320_mobilenet_v3_large``, ``fasterrcnn_*``) plus small variants for CPUs
(``fcos_resnet18_fpn``, ``fcos_resnet34_fpn``, ``retinanet_resnet18_fpn``: a ResNet-18/34
with a 128-wide FPN). Offline every model starts from random weights; with PRETRAINED the
backbone gets ImageNet weights (downloaded, so on a cluster with internet).
"""

from __future__ import annotations

from functools import partial

from visioncompress.errors import ConfigError, MissingDependencyError

SMALL_FPN_WIDTH = 128
TORCHVISION_DETECTORS = (
    "fcos_resnet50_fpn", "retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2", "ssdlite320_mobilenet_v3_large",
    "fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_resnet50_fpn",
)
SMALL_DETECTORS = {  # name -> (detector class, resnet depth)
    "fcos_resnet18_fpn": ("FCOS", "resnet18"),
    "fcos_resnet34_fpn": ("FCOS", "resnet34"),
    "retinanet_resnet18_fpn": ("RetinaNet", "resnet18"),
}


def detection_model_names() -> list[str]:
    return sorted([*TORCHVISION_DETECTORS, *SMALL_DETECTORS])


def detector_traits(name: str) -> dict:
    """What a detector's name says about it without building it: its family and whether it has an FPN.

    ``family`` is ``fcos``, ``retinanet``, ``ssd`` or ``two-stage`` (as ``heads.family`` says of the built
    model); ``fpn`` is whether ``model.backbone.fpn`` exists (what GroupFisher pruning needs).
    """
    if name not in detection_model_names():
        raise ConfigError("MODEL", name, detection_model_names())
    if name in SMALL_DETECTORS:
        return {"family": SMALL_DETECTORS[name][0].lower(), "fpn": True}
    family = next(f for prefix, f in (("fcos", "fcos"), ("retinanet", "retinanet"), ("ssd", "ssd"),
                                      ("fasterrcnn", "two-stage")) if name.startswith(prefix))
    return {"family": family, "fpn": "_fpn" in name}


def require_detector(name: str, need: str, stage: str, pipeline: str = "") -> None:
    """Refuse MODEL ``name`` before any work when ``stage`` cannot take it.

    ``need`` is ``one-stage`` (OpenVINO QAT: ``heads.require_one_stage``) or ``fpn``
    (GroupFisher pruning: ``group_fisher._fpn``).
    """
    checks = {"one-stage": (lambda t: t["family"] != "two-stage", "a one-stage detector"),
              "fpn": (lambda t: t["fpn"], "a detector with an FPN backbone")}
    fits, what = checks[need]
    if not fits(detector_traits(name)):
        names = [n for n in detection_model_names() if fits(detector_traits(n))]
        where = f" in pipeline {pipeline!r}" if pipeline else ""
        raise ConfigError("MODEL", name, f"{what} for {stage}{where}: " + ", ".join(names))


def _small_backbone(depth: str, pretrained: bool):
    import torchvision
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    resnet = getattr(torchvision.models, depth)(weights="DEFAULT" if pretrained else None)
    widths = [resnet.layer2[-1].conv2.out_channels, resnet.layer3[-1].conv2.out_channels,
              resnet.layer4[-1].conv2.out_channels]
    return BackboneWithFPN(resnet, {"layer2": "0", "layer3": "1", "layer4": "2"}, widths, SMALL_FPN_WIDTH,
                           extra_blocks=LastLevelP6P7(SMALL_FPN_WIDTH, SMALL_FPN_WIDTH))


def build_detector(name: str, num_classes: int, insize: int, mean: list[float], std: list[float],
                   pretrained: bool = False):
    """A detector for ``num_classes`` object classes (labels 1..C; 0 is background) at ``insize``."""
    import torchvision.models.detection as tvd

    common = dict(num_classes=num_classes + 1, min_size=insize, max_size=insize, image_mean=list(mean),
                  image_std=list(std))
    if name in SMALL_DETECTORS:
        cls_name, depth = SMALL_DETECTORS[name]
        return _fetching(partial(getattr(tvd, cls_name), _small_backbone(depth, pretrained), **common))
    if name not in TORCHVISION_DETECTORS:
        raise ConfigError("MODEL", name, detection_model_names())
    builder = getattr(tvd, name)
    if name.startswith("ssdlite"):
        common.pop("min_size"), common.pop("max_size")  # SSDlite's input size is fixed at 320
    return _fetching(partial(builder, weights=None, weights_backbone="DEFAULT" if pretrained else None, **common))


def _fetching(build):
    try:
        return build()
    except (OSError, RuntimeError) as exc:
        if "download" in str(exc).lower() or "urlopen" in str(exc).lower() or "connection" in str(exc).lower():
            raise MissingDependencyError(f"PRETRAINED weights could not be downloaded: {exc}. Set PRETRAINED=False "
                                         "or give CUSTOM_MODEL_PATH") from exc
        raise
