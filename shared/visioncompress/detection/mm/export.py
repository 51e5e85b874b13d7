"""OpenMMLab detectors end to end: one ONNX graph from the image batch to detections, NMS inside.

    export_mm(wrapper, path, settings=None) -> path           (the FP32 graph)
    quantize_mm_onnx(wrapper, data_root, path, config)        (ONNX Runtime static INT8)
    quantize_mm_openvino(wrapper, data_root, path, config)    (OpenVINO INT8 through NNCF)
    quantize_mm_qdq(wrapper, data_root, path, config)         (symmetric INT8 QDQ for a TensorRT engine)
    insert_quantizers(wrapper, data_root, config)             (NNCF's quantizers in the torch model, for QAT)
    save_mm_openvino(wrapper, path, settings)                 (the graph as an OpenVINO IR; a QAT model's INT8)
    coco_map_exported(predict, data_root, split, insize)      (pycocotools mAP of any runner)

The graph has the same input and outputs as the torchvision detectors' (``detection.export``): RGB images in
[0, 1], N x 3 x S x S (S = the wrapper's ``insize``, letterboxed like ``MMDetector.predict``: resized to fit,
padded bottom/right with 114), dynamic batch; outputs ``boxes``, ``scores``, ``labels``, ``num_detections``
with padding box 0, score 0, label -1. Labels are 1..C (mm's own label l is l + 1 here), as for the
torchvision detectors, so the project's runners and mAP code take either.

``MMEndToEnd`` = ``MMCore`` under ``/core/`` (255 scaling, the data preprocessor's channel order, mean and std,
then backbone + neck + head, mm's own forward: the raw per-level maps) + ``MMPostProcess`` under ``/post/``
(flattening, sigmoid, our own box decoding with the priors as constants of the export's input size,
score threshold, NMS_PRE top-k, clipping to the input, MIN_BBOX_SIZE, then ``detection.export``'s
``select_detections``: per-class ONNX NonMaxSuppression, MAX_BBOX_PER_IMG and the padding).
Quantization leaves ``/post/`` in floating point (``fp_node_names`` / ``post_processing_ops``); ONNX Runtime's
and TensorRT's QDQ also the detection head (``head_node_names``, see ``quantize_mm_onnx`` / ``quantize_mm_qdq``).

Supported heads (others are refused, naming the head):
* MMDetection ``RetinaHead`` (anchor based, sigmoid classifier, ``DeltaXYWHBBoxCoder``): NMS_PRE per level,
  over (anchor, class) pairs, as mmdet's ``BaseDenseHead`` does;
* MMDetection / MMYOLO ``YOLOXHead`` (anchor free, objectness): score = class x objectness; mmdet's head
  keeps the best class per point, mmyolo's (``multi_label``) every (point, class) pair; NMS_PRE over all
  levels. Where the config sets no ``nms_pre`` (mm then keeps every candidate) the export keeps 1000.

Differences from mm's own ``predict``, all at the image border: boxes are clipped to the S x S input before
NMS (mmdet clips RetinaNet to the unpadded image, mmyolo clips YOLOX after NMS, mmdet's YOLOX not at all).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from visioncompress.detection.export import (
    INPUT_NAME, OUTPUTS, PostSettings, _export, fp_node_names, select_detections,
)
from visioncompress.errors import ArtifactError, ConfigError
from visioncompress.log import get_logger

log = get_logger(__name__)

SUPPORTED = {("mmdet", "RetinaHead"): "anchors", ("mmdet", "YOLOXHead"): "yolox",
             ("mmyolo", "YOLOXHead"): "yolox"}
SUPPORTED_TEXT = ("a one-stage detector with MMDetection's RetinaHead (anchor based, DeltaXYWHBBoxCoder) or "
                  "MMDetection's / MMYOLO's YOLOXHead (anchor free, objectness) for the end-to-end export")
DEFAULT_NMS_PRE = 1000
PAD_VALUE = 114


def head_kind(wrapper) -> str:
    """"anchors" or "yolox"; ConfigError naming the head type for anything else."""
    model = wrapper.model
    head = getattr(model, "bbox_head", None)
    if head is None or getattr(model, "roi_head", None) is not None:
        name = type(getattr(model, "roi_head", None) or model).__name__
        raise ConfigError("MODEL", f"{wrapper.family} {type(model).__name__} ({name})", SUPPORTED_TEXT)
    package = type(head).__module__.split(".")[0]
    kind = SUPPORTED.get((package, type(head).__name__))
    if kind is None:
        raise ConfigError("MODEL", f"{package} {type(head).__name__}", SUPPORTED_TEXT)
    if kind == "anchors":
        coder = head.bbox_coder
        if type(coder).__name__ != "DeltaXYWHBBoxCoder" or coder.add_ctr_clamp or not head.use_sigmoid_cls:
            raise ConfigError("MODEL", f"{package} {type(head).__name__} with {type(coder).__name__}"
                              f"{' (add_ctr_clamp)' if getattr(coder, 'add_ctr_clamp', False) else ''}",
                              SUPPORTED_TEXT)
    return kind


def _test_cfg(wrapper) -> dict:
    cfg = wrapper.model.bbox_head.test_cfg or {}
    return dict(cfg.items()) if hasattr(cfg, "items") else {}


def default_settings(wrapper) -> PostSettings:
    """The mm config's own ``test_cfg`` as post-processing settings."""
    cfg = _test_cfg(wrapper)
    nms = cfg.get("nms") or {}
    return PostSettings(score_threshold=float(cfg.get("score_thr", 0.05)),
                        iou=float(nms.get("iou_threshold", 0.5)),
                        nms_pre=int(cfg.get("nms_pre", DEFAULT_NMS_PRE)),
                        max_per_image=int(cfg.get("max_per_img", 100)), max_per_class=0,
                        min_size=max(0.0, float(cfg.get("min_bbox_size", 0) or 0)))


def resolve_settings(wrapper, config=None) -> PostSettings:
    """``DetectionPostConfig`` (None or USE_DEFAULT_POST_PROCESSING: the mm config's test_cfg)."""
    if config is None or config.use_default:
        return default_settings(wrapper)
    return PostSettings(score_threshold=config.score_threshold, iou=config.iou, nms_pre=config.nms_pre,
                        max_per_image=config.max_per_image, max_per_class=config.max_per_class,
                        min_size=config.min_size)


def apply_settings(wrapper, settings: PostSettings) -> None:
    """Write settings into the mm model's test_cfg, so that its own ``predict`` uses the export's thresholds."""
    cfg = wrapper.model.bbox_head.test_cfg
    cfg["score_thr"] = settings.score_threshold
    cfg["nms_pre"] = settings.nms_pre
    cfg["max_per_img"] = settings.max_per_image
    cfg["min_bbox_size"] = settings.min_size
    cfg["nms"] = dict(type="nms", iou_threshold=settings.iou)


class MMCore(nn.Module):
    """RGB images in [0, 1] -> the head's raw per-level maps (cls..., reg...[, objectness...]) as one tuple."""

    def __init__(self, wrapper):
        super().__init__()
        self.model = wrapper.model
        pre = self.model.data_preprocessor
        normalize = bool(getattr(pre, "_enable_normalize", False))
        mean = pre.mean.reshape(1, -1, 1, 1).float() if normalize else torch.zeros(1, 3, 1, 1)
        std = pre.std.reshape(1, -1, 1, 1).float() if normalize else torch.ones(1, 3, 1, 1)
        self.register_buffer("mean", mean.clone(), persistent=False)
        self.register_buffer("std", std.clone(), persistent=False)
        # mm's pipeline loads BGR; with bgr_to_rgb the model sees RGB (our input as is), otherwise BGR
        self.to_bgr = not bool(getattr(pre, "_channel_conversion", False))

    def normalize(self, images):
        """RGB images in [0, 1] -> what the mm model's own forward takes (as its data preprocessor makes it)."""
        x = images * 255.0
        if self.to_bgr:
            x = x[:, [2, 1, 0]]
        return (x - self.mean) / self.std

    def forward(self, images):
        outputs = self.model(self.normalize(images), mode="tensor")
        return tuple(t for level_list in outputs for t in level_list)


class MMPostProcess(nn.Module):
    """Raw per-level maps -> boxes, scores, labels (1..C), num_detections."""

    def __init__(self, wrapper, kind: str, settings: PostSettings):
        super().__init__()
        head = wrapper.model.bbox_head
        self.kind, self.settings, self.insize = kind, settings, int(wrapper.insize)
        self.num_classes = int(head.num_classes)
        with torch.no_grad():
            raw = wrapper.model(torch.zeros(1, 3, self.insize, self.insize), mode="tensor")
        sizes = [tuple(t.shape[-2:]) for t in raw[0]]
        self.levels = len(sizes)
        if kind == "anchors":
            priors = head.prior_generator.grid_priors(sizes, device="cpu")
            coder = head.bbox_coder
            self.register_buffer("means", torch.tensor(coder.means, dtype=torch.float32), persistent=False)
            self.register_buffer("stds", torch.tensor(coder.stds, dtype=torch.float32), persistent=False)
            self.clip = bool(coder.clip_border)
            self.max_ratio = float(abs(np.log(16 / 1000)))
            self.multi_label = True
        else:
            priors = head.prior_generator.grid_priors(sizes, device="cpu", with_stride=True)
            self.clip = True
            cfg = _test_cfg(wrapper)
            self.multi_label = bool(cfg.get("multi_label", False)) and self.num_classes > 1
        self.level_counts = [int(p.shape[0]) for p in priors]
        self.register_buffer("priors", torch.cat(priors).float(), persistent=False)

    def _flat(self, maps, channels):
        n = maps[0].shape[0]
        return [m.permute(0, 2, 3, 1).reshape(n, -1, channels) for m in maps]

    def _topk_pairs(self, scores, k):
        """Top k (point, class) pairs of N x P x C scores -> scores, labels, point index (each N x k)."""
        values, index = scores.flatten(1).topk(min(k, scores.shape[1] * scores.shape[2]), dim=1)
        return values, index % self.num_classes, torch.div(index, self.num_classes, rounding_mode="floor")

    def _candidates(self, cls_maps, obj_maps):
        k = self.settings.nms_pre
        cls = self._flat(cls_maps, self.num_classes)
        if self.kind == "anchors":  # NMS_PRE per level, as mmdet's BaseDenseHead
            parts, start = [], 0
            for level, count in zip(cls, self.level_counts):
                s, lab, idx = self._topk_pairs(torch.sigmoid(level), k)
                parts.append((s, lab, idx + start))
                start += count
            return [torch.cat(p, 1) for p in zip(*parts)]
        scores = torch.sigmoid(torch.cat(cls, 1)) * torch.sigmoid(torch.cat(self._flat(obj_maps, 1), 1))
        if self.multi_label:
            return self._topk_pairs(scores, k)
        best, labels = scores.max(dim=2)
        values, index = best.topk(min(k, best.shape[1]), dim=1)
        return values, torch.gather(labels, 1, index), index

    def _decode(self, reg, index):
        codes = torch.gather(reg, 1, index.unsqueeze(-1).expand(-1, -1, 4))
        priors = self.priors[index]
        if self.kind == "anchors":
            d = codes * self.stds + self.means
            centre = (priors[..., :2] + priors[..., 2:]) * 0.5
            size = priors[..., 2:] - priors[..., :2]
            xy = centre + size * d[..., :2]
            wh = size * d[..., 2:].clamp(min=-self.max_ratio, max=self.max_ratio).exp()
        else:
            xy = priors[..., :2] + codes[..., :2] * priors[..., 2:]
            wh = codes[..., 2:].exp() * priors[..., 2:]
        boxes = torch.cat([xy - wh * 0.5, xy + wh * 0.5], dim=-1)
        return boxes.clamp(min=0.0, max=float(self.insize)) if self.clip else boxes

    def forward(self, *raw):
        n = self.levels
        cls_maps, reg_maps, obj_maps = raw[:n], raw[n:2 * n], raw[2 * n:3 * n]
        scores, labels, index = self._candidates(cls_maps, obj_maps)
        boxes = self._decode(torch.cat(self._flat(reg_maps, 4), 1), index)
        s = self.settings
        valid = (scores > s.score_threshold) & ((boxes[..., 2] - boxes[..., 0]) > s.min_size) & \
            ((boxes[..., 3] - boxes[..., 1]) > s.min_size)  # mm's min_bbox_size test: strictly larger
        out_boxes, out_scores, out_labels, num = select_detections(boxes, scores, labels, valid, self.num_classes, s)
        return out_boxes, out_scores, torch.where(out_labels >= 0, out_labels + 1, out_labels), num


class MMEndToEnd(nn.Module):
    def __init__(self, wrapper, settings: PostSettings):
        super().__init__()
        kind = head_kind(wrapper)
        self.core = MMCore(wrapper)
        self.post = MMPostProcess(wrapper, kind, settings)

    def forward(self, images):
        return self.post(*self.core(images))


@contextlib.contextmanager
def _fixed_upsampling(model: nn.Module):
    """``nn.Upsample(scale_factor=...)`` resizes to fixed output sizes while exporting (the input size is fixed
    anyway): a Resize by scales makes ONNX Runtime's symbolic shape inference, which quantization runs first,
    give up on the dynamic batch (floor(batch * 1.0) is not batch)."""
    layers = [m for m in model.modules() if isinstance(m, nn.Upsample) and m.scale_factor is not None]

    def fixed(layer):
        factor = layer.scale_factor if isinstance(layer.scale_factor, tuple) else (layer.scale_factor,) * 2

        def forward(x):
            size = tuple(int(int(d) * f) for d, f in zip(x.shape[-2:], factor))  # constants in the graph
            return nn.functional.interpolate(x, size=size, mode=layer.mode, align_corners=layer.align_corners)
        return forward

    for layer in layers:
        layer.forward = fixed(layer)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


def export_mm(wrapper, path: str | os.PathLike, settings: PostSettings | None = None) -> Path:
    """The mm detector (an ``MMDetector``) as one end-to-end ONNX graph at its ``insize``; batch dynamic."""
    wrapper.eval()
    settings = settings or default_settings(wrapper)
    module = MMEndToEnd(wrapper, settings).eval()
    dynamic = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in OUTPUTS}}
    example = (torch.rand(1, 3, wrapper.insize, wrapper.insize),)
    with _fixed_upsampling(wrapper.model):
        path = _export(module, example, Path(path), [INPUT_NAME], OUTPUTS, dynamic)
    log.info("mm end-to-end export (%s %s, %d px): %s; post-processing %s", wrapper.family,
             type(wrapper.model.bbox_head).__name__, wrapper.insize, path, settings.as_dict())
    return path


# --- images and mAP ---------------------------------------------------------------------------------------

def letterbox(image: np.ndarray, insize: int) -> tuple[np.ndarray, float, float]:
    """RGB uint8 H x W x 3 -> float32 3 x S x S in [0, 1] as ``MMDetector.predict`` feeds the model (bilinear
    resize to fit, pad 114 bottom/right, rounded to uint8), and the x / y scale factors."""
    h, w = image.shape[:2]
    scale = insize / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()[None]
    x = torch.nn.functional.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)[0]
    padded = torch.full((3, insize, insize), float(PAD_VALUE))
    padded[:, :nh, :nw] = x
    pixels = padded.round().clamp(0, 255).to(torch.uint8).numpy()
    return pixels.astype(np.float32) / 255.0, nw / w, nh / h


class CocoImages:
    """One split of a COCO folder (``images/`` + ``annotations/instances_<split>.json``), letterboxed."""

    def __init__(self, data_root, split: str, insize: int):
        from PIL import Image

        self.root, self.insize = Path(data_root), int(insize)
        ann = self.root / "annotations" / f"instances_{split}.json"
        if not ann.is_file():
            raise ArtifactError(f"{self.root}: no annotations/instances_{split}.json")
        self.truth = json.loads(ann.read_text())
        self.category_ids = [c["id"] for c in sorted(self.truth["categories"], key=lambda c: c["id"])]
        self.image_ids, arrays, self.scales = [], [], []
        for info in self.truth["images"]:
            rgb = np.asarray(Image.open(self.root / "images" / info["file_name"]).convert("RGB"))
            pixels, sx, sy = letterbox(rgb, self.insize)
            self.image_ids.append(info["id"])
            arrays.append(pixels)
            self.scales.append((sx, sy))
        self.images = np.stack(arrays) if arrays else np.zeros((0, 3, insize, insize), np.float32)

    def batches(self, batch_size: int, limit: int = 0):
        count = len(self.images) if not limit else min(limit, len(self.images))
        for start in range(0, count, batch_size):
            yield self.images[start:min(start + batch_size, count)]

    def coco_map(self, detections: list[dict]) -> dict:
        """mAP / mAP50 in points (pycocotools) of per-image detections (input pixels, labels 1..C)."""
        from visioncompress.detection.openvino_ptq import subset_map

        mapped = []
        for det, (sx, sy) in zip(detections, self.scales):
            boxes = np.asarray(det["boxes"], dtype=np.float64).reshape(-1, 4) / np.array([sx, sy, sx, sy])
            labels = [self.category_ids[int(label) - 1] for label in np.asarray(det["labels"]).ravel()]
            mapped.append({"boxes": boxes, "scores": np.asarray(det["scores"]).ravel(), "labels": labels})
        index = {image_id: n + 1 for n, image_id in enumerate(self.image_ids)}
        truth = {**self.truth, "annotations": [a for a in self.truth["annotations"] if a["image_id"] in index]}
        return {"mAP": subset_map(truth, self.image_ids, mapped)}


def coco_map_exported(outputs_fn, images: CocoImages, batch_size: int = 8) -> float:
    """mAP (points) of a graph runner ``outputs_fn(batch) -> [boxes, scores, labels, num_detections]``."""
    from visioncompress.detection.runners import split_detections

    detections = []
    for batch in images.batches(batch_size):
        detections.extend(split_detections(*outputs_fn(batch)[:4]))
    return images.coco_map(detections)["mAP"]


# --- INT8 -------------------------------------------------------------------------------------------------

def head_node_names(onnx_path: str | os.PathLike, wrapper) -> list[str]:
    """Names of the exported graph's detection-head nodes (``bbox_head`` and its children: the tracer names
    them ``/core/model/<child>/...``, e.g. mmdet YOLOX ``multi_level_conv_reg.0``, mmyolo ``head_module``,
    RetinaNet ``cls_convs.0`` / ``retina_reg``, a module shared across levels ``retina_reg_2`` for its later
    calls)."""
    import onnx

    children = {"bbox_head", *(name for name, _ in wrapper.model.bbox_head.named_children())}
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    names = []
    for node in graph.node:
        parts = node.name.split("/")
        if not node.name.startswith("/core/model/") or len(parts) < 5:
            continue
        scope = parts[3].split(".")[0]  # "multi_level_conv_reg.0" -> "multi_level_conv_reg"
        if scope in children or re.sub(r"_\d+$", "", scope) in children:  # "retina_reg_2": level 3's call
            names.append(node.name)
    return names


def quantize_mm_onnx(wrapper, data_root, path: str | os.PathLike, config, settings: PostSettings | None = None,
                     split: str = "train", limit: int = 0) -> dict:
    """ONNX Runtime static INT8 of the end-to-end graph (``detection.onnx_ptq``'s path): the mm detector is
    exported, calibrated on ``split`` of the COCO folder; ``/post/`` nodes and the detection head stay FP32.
    Returns what was done.

    Why the head stays FP32 (measured on a YOLOX-tiny trained at 96 px, 32 test images, FP32 mAP 10.25):
    ONNX Runtime quantizes every tensor between quantized ops (each SiLU conv gives three: Conv, Sigmoid and
    Mul outputs) to its calibration set's global min / max, and the head's tensors are long-tailed (the
    regression branch's SiLU outputs reach ~100 and its raw box codes -310..27, so one uint8 step is 0.4-1.3
    on codes that go through exp). The whole graph quantized: mAP 3.56 (S8S8 3.1); 16-bit activations with
    8-bit per-channel weights: 10.25, so the weights are fine; 16-bit activations only in the backbone 4.02,
    only in the neck 2.61, only in the head 10.51; head excluded 10.52 (S8S8 10.51), only its
    regression + objectness branch excluded 8.51, only the final 1x1 convs 1.76. NNCF (OpenVINO, 11.67) puts
    one quantizer per SiLU (its input side) and clips the range (reg branch [-11.8, 11.7] where ORT's min /
    max is [-0.28, ~100]), which is why it does not need this."""
    from visioncompress.quantize.onnx import _quantize_static

    settings = settings or default_settings(wrapper)
    calibration = list(CocoImages(data_root, split, wrapper.insize).batches(config.batch_size, limit))
    exclude = _FloatNodes(wrapper, head=True)
    path = _quantized_path(path)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_mm(wrapper, Path(tmp) / "fp32.onnx", settings)
        fp_nodes = _quantize_static(fp32, path, calibration, config, exclude=exclude)
    log.info("mm ONNX INT8 written to %s (%d calibration batches, %d post-processing and %d head nodes in FP32)",
             path, len(calibration), len(fp_nodes) - len(exclude.head), len(exclude.head))
    return {"path": str(path), "fp_nodes": fp_nodes, "fp_head_nodes": len(exclude.head),
            "post_processing": settings.as_dict(), "quantized_by": "onnxruntime quantize_static"}


class _FloatNodes:
    """``exclude`` for the quantizers: the graph's ``/post/`` nodes and, with ``head``, the detection head's."""

    def __init__(self, wrapper, *, head: bool):
        self.wrapper, self.with_head, self.head = wrapper, head, []

    def __call__(self, prepared) -> list[str]:
        if self.with_head:
            self.head = head_node_names(prepared, self.wrapper)
            if not self.head:
                raise ArtifactError(f"{type(self.wrapper.model.bbox_head).__name__}: no detection-head nodes found "
                                    "in the exported graph (expected /core/model/<bbox_head child>/...)")
        return fp_node_names(prepared) + self.head


def _quantized_path(path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def quantize_mm_qdq(wrapper, data_root, path: str | os.PathLike, config, settings: PostSettings | None = None,
                    split: str = "train", limit: int = 0) -> dict:
    """TensorRT PTQ's CPU half (``detection.tensorrt``'s path): the end-to-end graph with symmetric INT8 Q/DQ
    (``quantize.tensorrt._quantize_qdq``: zero points 0, per-channel weights, float biases) on the inputs of the
    weighted layers only, never their outputs (``WEIGHTED_OPS``: TensorRT's recommended placement, which lets it
    fuse each conv with the activation after it), calibrated with CALIBRATION_METHOD on ``split`` of the COCO
    folder in batches of CALIBRATION_BATCH_SIZE; ``/post/`` (TensorRT runs decoding, top-k and its NMS layer in
    floating point) and the detection head stay in floating point. Returns what was done.

    Measured in ONNX Runtime on a YOLOX-tiny trained at 96 px (``tests/mm/test_mm_export.py``'s fixture, 32 test
    images, FP32 mAP 10.25), head in FP32: MinMax 11.35, Entropy 11.35, Percentile 9.52; the head quantized
    (MinMax) 0.17: symmetric ranges over its long-tailed activations (see ``quantize_mm_onnx``) leave too few
    steps. Onnxruntime's own placement instead (Q/DQ on every Conv input and output, and on Sigmoid and Mul, as
    ``quantize_mm_onnx`` uses with asymmetric U8S8), head in FP32: 7.76; with Q/DQ on Conv inputs and outputs
    only: 10.12. Calibrating only the weighted layers' tensors also keeps the histogram calibrators (Entropy,
    Percentile) off the post-processing, whose box decoding (exp of raw codes) reaches inf: calibrating every
    tensor they stopped with "supplied range of [-inf, inf] is not finite"."""
    from visioncompress.quantize.onnx import _CalibrationReader
    from visioncompress.quantize.tensorrt import WEIGHTED_OPS, _drop_unused_opsets, _quantize_qdq

    settings = settings or default_settings(wrapper)
    calibration = list(CocoImages(data_root, split, wrapper.insize).batches(config.calibration_batch_size, limit))
    exclude = _FloatNodes(wrapper, head=True)
    path = _quantized_path(path)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_mm(wrapper, Path(tmp) / "fp32.onnx", settings)
        fp_nodes = _quantize_qdq(fp32, path, _CalibrationReader(calibration), config, exclude=exclude,
                                 op_types=WEIGHTED_OPS)
    _drop_unused_opsets(path)
    images = sum(len(batch) for batch in calibration)
    log.info("mm QDQ ONNX for TensorRT written to %s (%d calibration images, %s; %d post-processing and %d head "
             "nodes in FP)", path, images, config.calibration_method, len(fp_nodes) - len(exclude.head),
             len(exclude.head))
    return {"path": str(path), "fp_nodes": fp_nodes, "fp_head_nodes": len(exclude.head),
            "calibration_images": images, "post_processing": settings.as_dict(),
            "quantized_by": "onnxruntime quantize_static (symmetric QDQ for TensorRT, on the weighted layers' inputs)"}


def _openvino_end_to_end(wrapper, settings: PostSettings):
    """The end-to-end graph (``export_mm``) as an ``openvino.Model``, and the names of the exported ONNX graph's
    post-processing nodes (``fp_node_names``)."""
    import openvino as ov

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_mm(wrapper, Path(tmp) / "e2e.onnx", settings)
        return ov.convert_model(str(onnx_path)), fp_node_names(onnx_path)


def _save_openvino(ov_model, path) -> Path:
    import openvino as ov

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov_model, str(path), compress_to_fp16=False)
    return path


def quantize_mm_openvino(wrapper, data_root, path: str | os.PathLike, config,
                         settings: PostSettings | None = None, split: str = "train") -> dict:
    """OpenVINO INT8 (NNCF PTQ) of the end-to-end graph (``detection.openvino_ptq``'s path): the post-processing
    ops are NNCF's ignored scope. MAX_ACCURACY_DROP (accuracy control) is not offered for mm detectors."""
    import nncf

    from visioncompress.detection.openvino_ptq import post_processing_ops
    from visioncompress.quantize.openvino import nncf_options

    if config.max_accuracy_drop > 0:
        raise ConfigError("MAX_ACCURACY_DROP", config.max_accuracy_drop,
                          "0 for OpenMMLab detectors (accuracy-controlled PTQ runs on torchvision detectors)")
    settings = settings or default_settings(wrapper)
    images = CocoImages(data_root, split, wrapper.insize)
    calibration = [b for b in images.batches(1, limit=config.subset_size)]
    ov_model, _ = _openvino_end_to_end(wrapper, settings)
    ignored = post_processing_ops(ov_model)
    quantized = nncf.quantize(ov_model, nncf.Dataset(calibration), **nncf_options(config, len(calibration), ignored))
    _save_openvino(quantized, path)
    log.info("mm OpenVINO INT8 written to %s (%d calibration images, %d post-processing ops in FP)", path,
             len(calibration), len(ignored))
    return {"path": str(path), "fp_nodes": ignored, "post_processing": settings.as_dict(),
            "quantized_by": "nncf.quantize"}


# NNCF's torch backend costs about a second per calibration step whatever the batch size: batches of 16.
QAT_CALIBRATION_BATCH = 16


def insert_quantizers(wrapper, data_root, config, split: str = "train"):
    """The mm detector (``wrapper.model``) with NNCF's quantizers in its torch modules, ranges calibrated on
    ``split`` of the COCO folder (SUBSET_SIZE images, TRANSFORMER): what ``MMCore`` runs (backbone, neck and
    head) is quantized, as the OpenVINO PTQ of the end-to-end graph quantizes everything outside ``/post/``.
    Returns the quantized copy; it trains like the model it came from (NNCF's hooks run whenever its
    ``forward`` does, which is how the mm Runner calls it, ``mode="loss"``), and ``export_mm`` /
    ``save_mm_openvino`` export it with the quantizers as FakeQuantize ops.

    NNCF is told that each calibration item is a batch (``batchwise_statistics``): without it the ranges come
    from whole batches' extremes, and a YOLOX-tiny trained at 96 px (FP32 mAP 10.25) measured 1.1 mAP after
    calibration at 16 images a batch, 10.6 with it, 11.1 at one image a batch."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    head_kind(wrapper)  # a head the end-to-end export takes, before any calibration
    core = MMCore(wrapper).eval()
    images = CocoImages(data_root, split, wrapper.insize)
    batches = [torch.from_numpy(b) for b in images.batches(QAT_CALIBRATION_BATCH, limit=config.subset_size)]
    if not batches:
        raise ArtifactError(f"{data_root}: no {split} images to calibrate the quantizers on")
    log.info("NNCF quantizers into %s %s, calibrated on %d %s images", wrapper.family, type(wrapper.model).__name__,
             sum(len(b) for b in batches), split)
    dataset = nncf.Dataset(batches, lambda batch: dict(inputs=core.normalize(batch), mode="tensor"))
    quantized = nncf.quantize(wrapper.model.eval(), dataset, subset_size=len(batches),
                              model_type=nncf.ModelType.TRANSFORMER if config.transformer else None,
                              advanced_parameters=AdvancedQuantizationParameters(batchwise_statistics=True))
    # Initialised already; mmengine's Runner would call init_weights again, which takes the mean of every
    # parameter (NNCF's integer ones too, which fails) before finding there is nothing to initialise.
    quantized.init_weights = lambda: None
    return quantized


def save_mm_openvino(wrapper, path: str | os.PathLike, settings: PostSettings | None = None) -> dict:
    """The end-to-end graph of ``wrapper`` as an OpenVINO IR at ``path`` (FP32 weights kept): for a model from
    ``insert_quantizers`` (after training), its quantizers become FakeQuantize ops, which OpenVINO runs as
    INT8; the post-processing (the ONNX graph's ``/post/`` nodes, listed as ``fp_nodes``) has no quantizers.
    Returns what was done, as ``quantize_mm_openvino``. (OpenVINO renames the ops of a quantized core while
    converting it, so the list comes from the ONNX graph.)"""
    settings = settings or default_settings(wrapper)
    ov_model, post = _openvino_end_to_end(wrapper, settings)
    fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in ov_model.get_ordered_ops())
    _save_openvino(ov_model, path)
    log.info("mm OpenVINO IR written to %s (%d FakeQuantize ops, %d post-processing ops in FP)", path,
             fake_quantize, len(post))
    return {"path": str(path), "fp_nodes": post, "post_processing": settings.as_dict(),
            "fake_quantize_ops": fake_quantize}
