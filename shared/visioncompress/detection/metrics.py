"""mAP with pycocotools (COCO's own evaluation), from detections per image."""

from __future__ import annotations

import contextlib
import io

import numpy as np

from visioncompress.errors import MissingDependencyError


def coco_map(ground_truth: dict, detections: list[dict]) -> dict[str, float]:
    """``detections[i]`` belongs to image id ``i + 1`` (the order of the dataset split).

    Returns mAP@[.5:.95] and mAP@.5 in percent.
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:
        raise MissingDependencyError("pycocotools is needed to measure mAP (pip install pycocotools)") from exc
    results = []
    for index, det in enumerate(detections):
        boxes = np.asarray(det["boxes"], dtype=np.float64).reshape(-1, 4)
        for box, score, label in zip(boxes, np.asarray(det["scores"]).ravel(), np.asarray(det["labels"]).ravel()):
            results.append({"image_id": index + 1, "category_id": int(label), "score": float(score),
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    if not results:
        return {"mAP": 0.0, "mAP50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = ground_truth
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {"mAP": round(float(evaluation.stats[0]) * 100, 2), "mAP50": round(float(evaluation.stats[1]) * 100, 2)}
