"""COCO mAP of an mm detector with mmdet's CocoMetric (pycocotools)."""

from __future__ import annotations

import contextlib
import io

import torch

from .configs import coco_info, dataset_cfg
from .model import MMDetector, load_model
from .runner import register_all


def evaluate_mm(model_or_pt, data_root, split: str = "test", batch_size: int = 4) -> dict:
    """{"mAP": .., "mAP50": ..} on ``<data_root>/annotations/instances_<split>.json``."""
    register_all()
    from mmdet.evaluation import CocoMetric
    from mmdet.registry import DATASETS
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DefaultScope

    wrapper = model_or_pt if isinstance(model_or_pt, MMDetector) else load_model(model_or_pt)
    info = coco_info(data_root)
    with DefaultScope.overwrite_default_scope("mmdet"):
        dataset = DATASETS.build(dataset_cfg(info, split, wrapper.insize, train=False))
    metric = CocoMetric(ann_file=str(info.splits[split]), metric="bbox", format_only=False)
    metric.dataset_meta = dataset.metainfo
    model = wrapper.model
    was_training = model.training
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=pseudo_collate)
    detections = 0
    with torch.no_grad():
        for batch in loader:
            outputs = model.test_step(batch)
            detections += sum(len(o.pred_instances) for o in outputs)
            metric.process(batch, [o.to_dict() for o in outputs])
    model.train(was_training)
    if not detections:  # CocoMetric cannot score an empty result set; nothing detected is an mAP of 0
        return {"mAP": 0.0, "mAP50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        results = metric.evaluate(len(dataset))
    return {"mAP": float(results["coco/bbox_mAP"]), "mAP50": float(results["coco/bbox_mAP_50"])}


def evaluate_splits(wrapper: MMDetector, data_root) -> dict:
    info = coco_info(data_root)
    return {s: evaluate_mm(wrapper, data_root, s) for s in ("val", "test") if s in info.splits}

