"""Faster R-CNN as one graph: normalised image batch in, ``boxes``/``scores``/``labels``/``num_detections`` out.

torchvision's Faster R-CNN works image by image (lists of proposals of varying length); this module computes
the same thing for a whole batch with fixed shapes, so it exports with a dynamic batch:

1. ``core.backbone``: normalisation, backbone, FPN; ``core.rpn_head``: objectness and box deltas per anchor.
2. RPN proposal selection (floating point): per level the NMS_PRE best anchors by objectness, decoding
   against the graph's constant anchors, clipping, the minimum-size and score filters, NMS per level (ONNX
   ``NonMaxSuppression``, the level as its class) and the RPN's ``post_nms_top_n`` best survivors, in fixed
   slots with a validity mask (an image with fewer proposals has invalid slots that never become detections).
3. Multi-scale RoIAlign: every proposal goes to its FPN level (the FPN paper's rule, as torchvision's
   ``LevelMapper``); ONNX ``RoiAlign`` (``output_half_pixel``, torchvision's ``aligned=False``) runs on each
   level for all proposals and the proposal's own level is kept (exact: a selection, not a sum).
4. ``core.box_head`` + ``core.box_predictor``: class logits and per-class box deltas.
5. Final post-processing (floating point): per-class decoding, clipping, softmax, SCORE_THRESHOLD,
   MIN_BBOX_SIZE, per-class NMS (ONNX ``NonMaxSuppression``) and the MAX_BBOX_PER_IMG best, padded as the
   one-stage graphs (``export.select_detections``).

Only the modules under ``core`` are quantized: proposal selection, RoIAlign, decoding and NMS stay in
floating point (``export.fp_node_names`` = every node outside ``/core/``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import roi_align
from torchvision.ops.poolers import _setup_scales

from visioncompress.detection.export import NonMaxSuppression, PostSettings, kept_mask, select_detections

SIZE_DIVISIBLE = 32  # torchvision's GeneralizedRCNNTransform pads batches to a multiple of this


def is_faster_rcnn(detector: nn.Module) -> bool:
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.mask_rcnn import MaskRCNN
    from torchvision.models.detection.keypoint_rcnn import KeypointRCNN

    return isinstance(detector, FasterRCNN) and not isinstance(detector, (MaskRCNN, KeypointRCNN))


def default_two_stage_settings(detector: nn.Module) -> PostSettings:
    """torchvision's own settings: NMS_PRE is the RPN's per-level candidate count at test time."""
    heads = detector.roi_heads
    return PostSettings(score_threshold=float(heads.score_thresh), iou=float(heads.nms_thresh),
                        nms_pre=int(detector.rpn._pre_nms_top_n["testing"]),
                        max_per_image=int(heads.detections_per_img), max_per_class=0, min_size=1e-2)


class _Core(nn.Module):
    """The quantizable parts. Every use goes through this module's own call (``part`` says which), so their
    ONNX nodes are named under ``/core/`` (a submodule called directly from the parent would be named
    ``/backbone/...`` and quantization could not tell it from the post-processing)."""

    def __init__(self, detector: nn.Module, insize: int, padded: int):
        super().__init__()
        self.pad = padded - insize
        self.backbone = detector.backbone
        self.rpn_head = detector.rpn.head
        self.box_head = detector.roi_heads.box_head
        self.box_predictor = detector.roi_heads.box_predictor
        transform = detector.transform
        self.register_buffer("mean", torch.tensor(transform.image_mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(transform.image_std).view(1, -1, 1, 1), persistent=False)

    def forward(self, part: str, *inputs):
        if part == "features":  # normalisation, padding to SIZE_DIVISIBLE as torchvision's transform, backbone + FPN
            x = (inputs[0] - self.mean) / self.std
            if self.pad:
                x = nn.functional.pad(x, (0, self.pad, 0, self.pad))
            return self.backbone(x)
        if part == "rpn":
            return self.rpn_head(list(inputs))
        return self.box_predictor(self.box_head(inputs[0]))  # "boxes": class logits, per-class box deltas


class FasterRCNNEndToEnd(nn.Module):
    """Images in [0, 1] (N x 3 x S x S) -> boxes, scores, labels, num_detections (see the module docstring)."""

    def __init__(self, detector: nn.Module, insize: int, settings: PostSettings):
        super().__init__()
        detector = detector.eval()
        self.insize, self.settings = insize, settings
        self.padded = int(math.ceil(insize / SIZE_DIVISIBLE) * SIZE_DIVISIBLE)
        self.core = _Core(detector, insize, self.padded)
        rpn, heads = detector.rpn, detector.roi_heads
        self.rpn_coder, self.box_coder = rpn.box_coder, heads.box_coder
        self.rpn_iou, self.rpn_min_size = float(rpn.nms_thresh), float(rpn.min_size)
        self.rpn_score = float(rpn.score_thresh)
        self.rpn_post = int(rpn._post_nms_top_n["testing"])
        pool = heads.box_roi_pool
        with torch.no_grad():
            features = self.core.backbone(torch.zeros(1, 3, self.padded, self.padded))
            image_list = ImageList(torch.zeros(1, 3, self.padded, self.padded), [(insize, insize)])
            anchors = rpn.anchor_generator(image_list, list(features.values()))[0]
        self.register_buffer("anchors", anchors.float(), persistent=False)
        self.level_names = [n for n in pool.featmap_names if n in features]
        scales, mapper = _setup_scales([features[n] for n in self.level_names], [(insize, insize)],
                                       pool.canonical_scale, pool.canonical_level)  # as the pooler's first call
        self.scales = [float(s) for s in scales]
        self.k_min, self.k_max = int(mapper.k_min), int(mapper.k_max)
        self.s0, self.lvl0, self.eps = float(mapper.s0), float(mapper.lvl0), float(mapper.eps)
        self.output_size, self.sampling_ratio = tuple(pool.output_size), int(pool.sampling_ratio)
        self.level_anchors = [f.shape[-2] * f.shape[-1] * a for f, a in
                              zip(features.values(), rpn.anchor_generator.num_anchors_per_location())]

    # --- 2. RPN proposals: N x R boxes and a validity mask ---------------------------------------------------
    def proposals(self, objectness: list, deltas: list):
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        objectness = objectness.reshape(-1, sum(self.level_anchors))  # the batch stays a dynamic dimension
        deltas = deltas.reshape(-1, sum(self.level_anchors), 4)
        logits, indices, levels = [], [], []
        start = 0
        for level, count in enumerate(self.level_anchors):
            values, index = objectness[:, start:start + count].topk(min(self.settings.nms_pre, count), dim=1)
            logits.append(values)
            indices.append(index + start)
            levels.append(torch.full((values.shape[1],), level, dtype=torch.int64))
            start += count
        logits, index, level = torch.cat(logits, 1), torch.cat(indices, 1), torch.cat(levels)
        codes = torch.gather(deltas, 1, index.unsqueeze(-1).expand(-1, -1, 4))
        boxes = self.rpn_coder.decode_single(codes.reshape(-1, 4), self.anchors[index].reshape(-1, 4))
        boxes = boxes.reshape(codes.shape).clamp(min=0.0, max=float(self.insize))
        scores = torch.sigmoid(logits)
        valid = ((boxes[..., 2] - boxes[..., 0]) >= self.rpn_min_size) & \
            ((boxes[..., 3] - boxes[..., 1]) >= self.rpn_min_size) & (scores >= self.rpn_score)
        candidates = scores.shape[1]
        per_level = torch.where((level.view(1, 1, -1) == torch.arange(len(self.level_anchors)).view(1, -1, 1))
                                & valid.unsqueeze(1), scores.unsqueeze(1), torch.full_like(scores.unsqueeze(1), -1.0))
        selected = NonMaxSuppression.apply(boxes, per_level, torch.tensor([candidates], dtype=torch.int64),
                                           torch.tensor([self.rpn_iou], dtype=torch.float32),
                                           torch.tensor([-0.5], dtype=torch.float32))
        kept = kept_mask(selected, scores)
        slots = min(self.rpn_post, candidates)
        best, order = torch.where(kept, scores, torch.full_like(scores, -1.0)).topk(slots, dim=1)
        return torch.gather(boxes, 1, order.unsqueeze(-1).expand(-1, -1, 4)), best > -0.5

    # --- 3. multi-scale RoIAlign ------------------------------------------------------------------------------
    def roi_features(self, features: dict, proposals: torch.Tensor) -> torch.Tensor:
        image = torch.cumsum(torch.ones_like(proposals[..., 0]), 0) - 1.0  # N x R: each proposal's image index
        rois = torch.cat([image.reshape(-1, 1), proposals.reshape(-1, 4)], dim=1)
        boxes = proposals.reshape(-1, 4)
        size = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        target = torch.floor(self.lvl0 + torch.log2(size / self.s0) + self.eps)
        target = torch.clamp(target, min=self.k_min, max=self.k_max) - self.k_min
        pooled = None
        for level, (name, scale) in enumerate(zip(self.level_names, self.scales)):
            here = roi_align(features[name], rois, self.output_size, spatial_scale=scale,
                             sampling_ratio=self.sampling_ratio, aligned=False)
            pooled = here if pooled is None else torch.where((target == level).view(-1, 1, 1, 1), here, pooled)
        return pooled

    # --- 5. final detections ----------------------------------------------------------------------------------
    def detections(self, class_logits, box_regression, proposals, proposal_valid):
        slots, num_classes = proposal_valid.shape[1], class_logits.shape[-1]
        boxes = self.box_coder.decode_single(box_regression, proposals.reshape(-1, 4))
        boxes = boxes.reshape(-1, slots, num_classes, 4).clamp(min=0.0, max=float(self.insize))[:, :, 1:]
        scores = torch.softmax(class_logits, -1).reshape(-1, slots, num_classes)[:, :, 1:]
        labels = torch.zeros_like(scores, dtype=torch.int64) + torch.arange(1, num_classes, dtype=torch.int64)
        valid = proposal_valid.unsqueeze(-1) & (scores > self.settings.score_threshold)
        boxes, scores = boxes.reshape(-1, slots * (num_classes - 1), 4), scores.reshape(-1, slots * (num_classes - 1))
        labels, valid = labels.reshape(-1, slots * (num_classes - 1)), valid.reshape(-1, slots * (num_classes - 1))
        s = self.settings
        if s.min_size > 0:
            valid = valid & ((boxes[..., 2] - boxes[..., 0]) >= s.min_size) & \
                ((boxes[..., 3] - boxes[..., 1]) >= s.min_size)
        return select_detections(boxes, scores, labels, valid, num_classes, s)

    def forward(self, images):
        features = self.core("features", images)
        objectness, deltas = self.core("rpn", *features.values())
        proposals, valid = self.proposals(objectness, deltas)
        class_logits, box_regression = self.core("boxes", self.roi_features(features, proposals))
        return self.detections(class_logits, box_regression, proposals, valid)
