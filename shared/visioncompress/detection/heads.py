"""One interface over torchvision's detectors: features, raw head outputs, losses and decoding.

One-stage detectors (FCOS, RetinaNet, SSD/SSDlite) are split into a *core* (normalisation,
backbone, head: images in, raw per-anchor tensors out) and a *decoder* (anchors, box decoding,
score threshold, NMS). The core is what ONNX export, quantization and QAT work on; the decoder
runs in PyTorch after any runtime, so post-processing stays outside the exported graph.
Two-stage detectors (Faster R-CNN) keep their own forward: they have no core (no OpenVINO QAT); they
export end to end through ``export_two_stage`` (PTQ), and fine-tune, distil and prune as they are.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection import FCOS, RetinaNet
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import boxes as box_ops

from visioncompress.errors import ConfigError

OUTPUT_NAMES = {
    "fcos": ("cls_logits", "bbox_regression", "bbox_ctrness"),
    "retinanet": ("cls_logits", "bbox_regression"),
    "ssd": ("bbox_regression", "cls_logits"),
}


def family(model: nn.Module) -> str:
    if isinstance(model, FCOS):
        return "fcos"
    if isinstance(model, RetinaNet):
        return "retinanet"
    if isinstance(model, SSD):
        return "ssd"
    return "two-stage"


def require_one_stage(model: nn.Module, stage: str) -> str:
    kind = family(model)
    if kind == "two-stage":
        raise ConfigError("MODEL", type(model).__name__,
                          f"a one-stage detector (fcos_*, retinanet_*, ssdlite320_mobilenet_v3_large) for {stage}; "
                          "two-stage detectors support fine-tuning, distillation and pruning")
    return kind


class DetectorCore(nn.Module):
    """Images in [0, 1] (N x 3 x S x S) -> the head's raw outputs, as a tuple (see OUTPUT_NAMES)."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.kind = require_one_stage(detector, "this stage")
        self.backbone, self.head = detector.backbone, detector.head
        transform = detector.transform
        self.register_buffer("mean", torch.tensor(transform.image_mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(transform.image_std).view(1, -1, 1, 1), persistent=False)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        features = self.backbone((images - self.mean) / self.std)
        return list(features.values()) if isinstance(features, dict) else [features]

    def forward_with_features(self, images: torch.Tensor):
        features = self.features(images)
        outputs = self.head(features)
        return features, tuple(outputs[name] for name in OUTPUT_NAMES[self.kind])

    def forward(self, images: torch.Tensor):
        return self.forward_with_features(images)[1]


def _anchors(detector: nn.Module, batch: int, insize: int, level_sizes: list):
    # Anchors depend only on the image and feature-map sizes, so empty stand-ins are enough.
    images = torch.zeros(batch, 3, insize, insize)
    features = [torch.zeros(batch, 1, h, w) for h, w in level_sizes]
    return detector.anchor_generator(ImageList(images, [(insize, insize)] * batch), features)


def level_sizes(features: list[torch.Tensor]) -> list[tuple[int, int]]:
    return [tuple(f.shape[-2:]) for f in features]


def _as_dict(kind: str, outputs) -> dict[str, torch.Tensor]:
    return dict(zip(OUTPUT_NAMES[kind], outputs))


def dense_losses(detector: nn.Module, images: torch.Tensor, levels: list, outputs,
                 targets: list[dict]) -> dict[str, torch.Tensor]:
    """The detector's own training losses for raw core outputs (what QAT and feature KD train on)."""
    kind = family(detector)
    head_outputs = _as_dict(kind, outputs)
    anchors = _anchors(detector, len(images), images.shape[-1], levels)
    if kind == "fcos":
        per_level = [h * w for h, w in levels]
        return detector.compute_loss(targets, head_outputs, anchors, per_level)
    if kind == "retinanet":
        return detector.compute_loss(targets, head_outputs, anchors)
    matched = []
    for image_anchors, target in zip(anchors, targets):
        if target["boxes"].numel() == 0:
            matched.append(torch.full((image_anchors.size(0),), -1, dtype=torch.int64))
        else:
            matched.append(detector.proposal_matcher(box_ops.box_iou(target["boxes"], image_anchors)))
    return detector.compute_loss(targets, head_outputs, anchors, matched)


def decode(detector: nn.Module, insize: int, level_sizes: list, outputs) -> list[dict[str, torch.Tensor]]:
    """Boxes, scores and labels per image from raw core outputs (from any runtime)."""
    kind = family(detector)
    head_outputs = _as_dict(kind, [torch.as_tensor(o) for o in outputs])
    batch = head_outputs["cls_logits"].size(0)
    anchors = _anchors(detector, batch, insize, level_sizes)
    sizes = [(insize, insize)] * batch
    if kind == "ssd":
        return detector.postprocess_detections(head_outputs, anchors, sizes)
    hw = [h * w for h, w in level_sizes]
    per_anchor = head_outputs["cls_logits"].size(1) // sum(hw)
    per_level = [n * per_anchor for n in hw]
    split_outputs = {k: list(v.split(per_level, dim=1)) for k, v in head_outputs.items()}
    split_anchors = [list(a.split(per_level)) for a in anchors]
    return detector.postprocess_detections(split_outputs, split_anchors, sizes)


def feature_shapes(detector: nn.Module, insize: int) -> list[tuple[int, ...]]:
    core = DetectorCore(detector).eval()
    with torch.no_grad():
        return [tuple(f.shape) for f in core.features(torch.zeros(1, 3, insize, insize))]


def losses(detector: nn.Module, images: torch.Tensor, targets: list[dict], *, with_features: bool = False):
    """Training losses for any family; with_features also returns the backbone/FPN features."""
    if family(detector) == "two-stage":
        captured: list = []
        handle = detector.backbone.register_forward_hook(lambda _m, _i, out: captured.append(list(out.values())))
        try:
            loss = detector(list(images), targets)
        finally:
            handle.remove()
        return (loss, captured[0]) if with_features else loss
    core = DetectorCore(detector)
    features, outputs = core.forward_with_features(images)
    loss = dense_losses(detector, images, level_sizes(features), outputs, targets)
    return (loss, features) if with_features else loss


@torch.no_grad()
def predict(detector: nn.Module, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    detector.eval()
    if family(detector) == "two-stage":
        return detector(list(images))
    core = DetectorCore(detector)
    features, outputs = core.forward_with_features(images)
    return decode(detector, images.shape[-1], level_sizes(features), outputs)
