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


def match_detections(reference: list[dict], exported: list[dict], *, box_px: float = 1.0,
                     score: float = 1e-3) -> dict:
    """How closely an exported detector reproduces a reference detector, image by image.

    Each reference detection is matched to an unused exported one with the same label, every box coordinate
    within ``box_px`` pixels and the score within ``score``. Returns the counts (``detections``: the reference's
    total, ``matched``, ``count_differs``: images whose numbers of detections differ) and the largest box and
    score differences over the matched pairs."""
    total = matched = count_differs = 0
    max_box = max_score = 0.0
    for ref, got in zip(reference, exported):
        boxes, scores, labels = (np.asarray(ref[k].detach() if hasattr(ref[k], "detach") else ref[k])
                                 for k in ("boxes", "scores", "labels"))
        got_boxes, got_scores, got_labels = (np.asarray(got[k]) for k in ("boxes", "scores", "labels"))
        count_differs += int(len(scores) != len(got_scores))
        used = np.zeros(len(got_scores), dtype=bool)
        for box, value, label in zip(boxes.reshape(-1, 4), scores, labels):
            box_diff = np.abs(got_boxes.reshape(-1, 4) - box).max(axis=1) if len(got_scores) else np.zeros(0)
            score_diff = np.abs(got_scores - value)
            close = ~used & (got_labels == label) & (score_diff <= score) & (box_diff <= box_px)
            total += 1
            if close.any():
                pick = int(np.argmax(close))
                used[pick] = True
                matched += 1
                max_box, max_score = max(max_box, float(box_diff[pick])), max(max_score, float(score_diff[pick]))
    return {"detections": total, "matched": matched, "count_differs": count_differs,
            "max_box_px": round(max_box, 6), "max_score": round(max_score, 8), "box_px": box_px, "score": score}
