"""End-to-end detectors: one graph from the normalised image batch to detections, NMS inside.

``EndToEndDetector`` = ``DetectorCore`` (normalisation, backbone, FPN, head) + ``PostProcess`` (anchors or
points, box decoding, score threshold, per-level top-k, clipping, minimum box size, per-class NMS as ONNX
``NonMaxSuppression``, the final top-k). Exported with the TorchScript ONNX exporter (opset 17; the dynamo
exporter fails on torchvision detectors), it loads with ``onnxruntime.InferenceSession`` alone, converts to
OpenVINO with ``ov.convert_model`` (NMS becomes OpenVINO's own NMS op) and parses in TensorRT (its ONNX
parser maps ``NonMaxSuppression`` to ``INMSLayer``). The input size is fixed (anchors are constants of the
graph); the batch is dynamic.

Outputs, for a batch of N images and K = min(MAX_BBOX_PER_IMG, candidates) slots per image:

* ``boxes``  float32 N x K x 4, (x1, y1, x2, y2) in input pixels;
* ``scores`` float32 N x K, sorted high to low within an image;
* ``labels`` int64   N x K (the detector's class ids: 1..C for our datasets);
* ``num_detections`` int64 N: slots ``[:num_detections[i]]`` of image i are detections; the slots after them
  are padding with box 0, score 0 and label -1.

All post-processing nodes are under the ``/post/`` name scope of the ONNX graph: quantization excludes them
(``fp_node_names``), so decoding and NMS always run in floating point.

Faster R-CNN (``export_two_stage``) gives the same four outputs from one graph, with the RPN's proposal
selection (its NMS too) and multi-scale RoIAlign (ONNX ``RoiAlign``) inside, also with a dynamic batch.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from visioncompress.detection.heads import OUTPUT_NAMES, DetectorCore, _anchors, feature_shapes, family

INPUT_NAME = "input"
OUTPUTS = ("boxes", "scores", "labels", "num_detections")
OPSET = 17
POST_SCOPE = "/post/"
PADDING = {"box": 0.0, "score": 0.0, "label": -1}


@dataclass(frozen=True)
class PostSettings:
    """Resolved post-processing settings (nyuntam_vision's names in comments)."""

    score_threshold: float  # SCORE_THRESHOLD / CONFIDENCE_THRESHOLD
    iou: float  # IOU
    nms_pre: int  # NMS_PRE: candidates per level (per class for SSD) before NMS
    max_per_image: int  # MAX_BBOX_PER_IMG
    max_per_class: int  # MAX_BBOX_PER_CLS (0 = no limit)
    min_size: float  # MIN_BBOX_SIZE (0 = keep every box)

    def as_dict(self) -> dict:
        return {"SCORE_THRESHOLD": self.score_threshold, "IOU": self.iou, "NMS_PRE": self.nms_pre,
                "MAX_BBOX_PER_IMG": self.max_per_image, "MAX_BBOX_PER_CLS": self.max_per_class,
                "MIN_BBOX_SIZE": self.min_size}


def default_settings(detector: nn.Module) -> PostSettings:
    """torchvision's own post-processing settings of this detector."""
    if family(detector) == "two-stage":
        from visioncompress.detection.export_two_stage import default_two_stage_settings

        return default_two_stage_settings(require_exportable(detector, "end-to-end export"))
    return PostSettings(score_threshold=float(detector.score_thresh), iou=float(detector.nms_thresh),
                        nms_pre=int(detector.topk_candidates), max_per_image=int(detector.detections_per_img),
                        max_per_class=0, min_size=0.0)


def require_exportable(detector: nn.Module, stage: str) -> nn.Module:
    """The detector, if it exports end to end (every one-stage family and Faster R-CNN); else ConfigError."""
    from visioncompress.detection.export_two_stage import is_faster_rcnn

    if family(detector) == "two-stage" and not is_faster_rcnn(detector):
        from visioncompress.errors import ConfigError

        raise ConfigError("MODEL", type(detector).__name__,
                          f"a detector that exports end to end for {stage}: FCOS, RetinaNet, SSD(lite) or Faster R-CNN")
    return detector


def resolve_settings(detector: nn.Module, config=None) -> PostSettings:
    """The settings a ``DetectionPostConfig`` asks for (None or USE_DEFAULT_POST_PROCESSING: the model's own)."""
    if config is None or config.use_default:
        return default_settings(detector)
    return PostSettings(score_threshold=config.score_threshold, iou=config.iou, nms_pre=config.nms_pre,
                        max_per_image=config.max_per_image, max_per_class=config.max_per_class,
                        min_size=config.min_size)


class NonMaxSuppression(torch.autograd.Function):
    """Per-class NMS with ONNX ``NonMaxSuppression``'s signature and output (selected [S, 3] = batch, class, box).

    Eager (used while tracing) it runs torchvision's NMS; exported it is the ONNX operator itself.
    """

    @staticmethod
    def forward(ctx, boxes, scores, max_per_class, iou, score_threshold):
        from torchvision.ops import nms

        selected = []
        limit, threshold = int(max_per_class.reshape(-1)[0]), float(score_threshold.reshape(-1)[0])
        for b in range(boxes.shape[0]):
            for c in range(scores.shape[1]):
                candidates = torch.nonzero(scores[b, c] > threshold).flatten()
                keep = candidates[nms(boxes[b, candidates], scores[b, c, candidates], float(iou.reshape(-1)[0]))]
                keep = keep[:limit]
                selected.append(torch.stack([torch.full_like(keep, b), torch.full_like(keep, c), keep], dim=1))
        return torch.cat(selected) if selected else torch.zeros(0, 3, dtype=torch.int64)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou, score_threshold):
        return g.op("NonMaxSuppression", boxes, scores, max_per_class, iou, score_threshold)


class PostProcess(nn.Module):
    """Raw head outputs (``heads.OUTPUT_NAMES`` order) -> boxes, scores, labels, num_detections."""

    def __init__(self, detector: nn.Module, insize: int, settings: PostSettings):
        super().__init__()
        self.kind = family(detector)
        self.insize, self.settings = insize, settings
        levels = [tuple(s[-2:]) for s in feature_shapes(detector, insize)]
        with torch.no_grad():
            anchors = _anchors(detector, 1, insize, levels)[0]
        self.register_buffer("anchors", anchors.float(), persistent=False)
        self.box_coder = detector.box_coder
        if self.kind == "ssd":
            self.level_anchors = [anchors.shape[0]]
        else:
            hw = [h * w for h, w in levels]
            per_position = anchors.shape[0] // sum(hw)
            self.level_anchors = [n * per_position for n in hw]

    # --- candidates: (score, label, anchor index) per image, a fixed number M of them -------------------------
    def _candidates(self, outputs: dict):
        k = self.settings.nms_pre
        logits = outputs["cls_logits"]
        if self.kind == "ssd":
            num_classes = logits.shape[-1]
            probs = torch.softmax(logits, dim=-1)[:, :, 1:].transpose(1, 2)  # N x (C-1) x A
            top = min(k, self.level_anchors[0])
            scores, anchor_index = probs.topk(top, dim=2)
            labels = torch.arange(1, num_classes, dtype=torch.int64).view(1, -1, 1).expand_as(anchor_index)
            return scores.flatten(1), labels.flatten(1), anchor_index.flatten(1)
        num_classes = logits.shape[-1]
        if self.kind == "fcos":
            scores = torch.sqrt(torch.sigmoid(logits) * torch.sigmoid(outputs["bbox_ctrness"]))
        else:
            scores = torch.sigmoid(logits)
        all_scores, all_labels, all_index = [], [], []
        start = 0
        for count in self.level_anchors:
            level = scores[:, start:start + count].flatten(1)
            values, index = level.topk(min(k, count * num_classes), dim=1)
            all_scores.append(values)
            all_labels.append(index % num_classes)
            all_index.append(torch.div(index, num_classes, rounding_mode="floor") + start)
            start += count
        return torch.cat(all_scores, 1), torch.cat(all_labels, 1), torch.cat(all_index, 1)

    def _decode(self, regression, anchor_index):
        gather = anchor_index.unsqueeze(-1).expand(-1, -1, 4)
        codes = torch.gather(regression, 1, gather)
        anchors = self.anchors[anchor_index]
        if self.kind == "fcos":
            boxes = self.box_coder.decode(codes, anchors)
        else:
            boxes = self.box_coder.decode_single(codes.reshape(-1, 4), anchors.reshape(-1, 4)).reshape(codes.shape)
        return boxes.clamp(min=0.0, max=float(self.insize))

    def forward(self, *raw):
        outputs = dict(zip(OUTPUT_NAMES[self.kind], raw))
        s = self.settings
        scores, labels, anchor_index = self._candidates(outputs)
        boxes = self._decode(outputs["bbox_regression"], anchor_index)
        valid = scores > s.score_threshold
        if s.min_size > 0:
            valid = valid & ((boxes[..., 2] - boxes[..., 0]) >= s.min_size) & \
                ((boxes[..., 3] - boxes[..., 1]) >= s.min_size)
        return select_detections(boxes, scores, labels, valid, outputs["cls_logits"].shape[-1], s)


def select_detections(boxes, scores, labels, valid, num_classes: int, s: PostSettings):
    """Per-class NMS (ONNX ``NonMaxSuppression``) over N x M candidates, then the best MAX_BBOX_PER_IMG per
    image in the padded output convention: boxes, scores, labels, num_detections. ``labels`` lie in
    [0, num_classes); candidates where ``valid`` is False never survive. Every end-to-end graph ends here
    (torchvision's detectors in this module, OpenMMLab's in ``detection.mm.export``)."""
    candidates = scores.shape[1]
    classes = torch.arange(num_classes, dtype=torch.int64).view(1, -1, 1)
    per_class = torch.where((labels.unsqueeze(1) == classes) & valid.unsqueeze(1), scores.unsqueeze(1),
                            torch.full_like(scores.unsqueeze(1), -1.0))  # N x C x M, -1 = not a candidate
    selected = NonMaxSuppression.apply(
        boxes, per_class, torch.tensor([s.max_per_class or candidates], dtype=torch.int64),
        torch.tensor([s.iou], dtype=torch.float32), torch.tensor([0.0], dtype=torch.float32))
    kept = kept_mask(selected, scores)
    slots = min(s.max_per_image, candidates)
    final, index = torch.where(kept, scores, torch.full_like(scores, -1.0)).topk(slots, dim=1)
    ok = final > 0
    out_boxes = torch.gather(boxes, 1, index.unsqueeze(-1).expand(-1, -1, 4)) * ok.unsqueeze(-1).to(boxes.dtype)
    out_scores = torch.where(ok, final, torch.zeros_like(final))
    out_labels = torch.where(ok, torch.gather(labels, 1, index), torch.full_like(index, PADDING["label"]))
    return out_boxes, out_scores, out_labels, ok.to(torch.int64).sum(dim=1)


def kept_mask(selected, scores):
    """NonMaxSuppression's selected (batch, class, box) triples as an N x M boolean mask over ``scores``."""
    candidates = scores.shape[1]
    flat = selected[:, 0] * candidates + selected[:, 2]
    kept = torch.zeros_like(scores).flatten().scatter(0, flat, torch.ones_like(flat, dtype=scores.dtype))
    return kept.view_as(scores) > 0


class EndToEndDetector(nn.Module):
    """Images in [0, 1] (N x 3 x S x S) -> boxes, scores, labels, num_detections."""

    def __init__(self, detector: nn.Module, insize: int, settings: PostSettings):
        super().__init__()
        self.core = DetectorCore(detector)
        self.post = PostProcess(detector, insize, settings)

    def forward(self, images):
        return self.post(*self.core(images))


class _PostOnly(nn.Module):
    """The post-processing alone, under the same ``/post/`` name scope as in the end-to-end graph."""

    def __init__(self, post: PostProcess):
        super().__init__()
        self.post = post

    def forward(self, *raw):
        return self.post(*raw)


def _export(module: nn.Module, example, path: Path, input_names, output_names, dynamic) -> Path:
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), example, str(path), dynamo=False, opset_version=OPSET,
                          input_names=list(input_names), output_names=list(output_names), dynamic_axes=dynamic)
    return path


def export_end_to_end(detector: nn.Module, insize: int, settings: PostSettings, path: str | os.PathLike) -> Path:
    """The whole detector as one ONNX graph (see the module docstring for its outputs)."""
    require_exportable(detector, "end-to-end export")
    if family(detector) == "two-stage":
        from visioncompress.detection.export_two_stage import FasterRCNNEndToEnd

        module = FasterRCNNEndToEnd(detector.eval(), insize, settings).eval()
    else:
        module = EndToEndDetector(detector.eval(), insize, settings).eval()
    dynamic = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in OUTPUTS}}
    return _export(module, (torch.rand(1, 3, insize, insize),), Path(path), [INPUT_NAME], OUTPUTS, dynamic)


def export_post(detector: nn.Module, insize: int, settings: PostSettings, path: str | os.PathLike) -> Path:
    """Only the post-processing, raw head outputs in (named as ``heads.OUTPUT_NAMES``): to attach to a core
    that was quantized elsewhere (the OpenVINO QAT core)."""
    core = DetectorCore(detector.eval()).eval()
    with torch.no_grad():
        raw = core(torch.rand(1, 3, insize, insize))
    names = OUTPUT_NAMES[core.kind]
    dynamic = {**{n: {0: "batch"} for n in names}, **{n: {0: "batch"} for n in OUTPUTS}}
    module = _PostOnly(PostProcess(detector, insize, settings))
    return _export(module, tuple(raw), Path(path), names, OUTPUTS, dynamic)


def fp_node_names(onnx_path: str | os.PathLike) -> list[str]:
    """Names of the graph's post-processing nodes (what quantization leaves in floating point)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [n.name for n in graph.node if not n.name.startswith("/core/")]


def attach_post_openvino(ov_core, post_onnx: str | os.PathLike, output_names):
    """An OpenVINO model: ``ov_core``'s outputs (in ``output_names`` order) fed into the post-processing graph."""
    import openvino as ov

    post = ov.convert_model(str(post_onnx))
    results = [result.input_value(0) for result in ov_core.get_results()]  # what feeds each core output
    for parameter, source in zip(post.get_parameters(), results):
        for target in list(parameter.output(0).get_target_inputs()):
            target.replace_source_output(source)
    model = ov.Model(list(post.get_results()), ov_core.get_parameters(), "end_to_end_detector")
    for output, name in zip(model.outputs, OUTPUTS):
        output.get_tensor().set_names({name})
    return model

