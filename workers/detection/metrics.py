"""Detection scores: VOC mAP@0.5, COCO mAP@[.5:.95] (both by pycocotools), and proposal recall.

One format serves the worker and the challenge server alike:
ground truth is `{image_id: [[x1, y1, x2, y2, class_id, difficult], ...]}` (what a dataset's
`test_labels` returns), detections are rows `(image_id, class_id, score, x1, y1, x2, y2)` (the
columns of predictions.csv). Boxes are continuous pixel coordinates; class ids run 1..C.

pycocotools does the matching. Difficult boxes go in as COCO `iscrowd`, so a detection on one
neither counts as a true positive nor as a false one, and the box is not needed for recall
(VOC's rule). One difference from the VOC devkit remains: COCO measures overlap with a crowd
box as intersection over the detection's area, so a small detection inside a difficult box
is ignored where the devkit would count it a false positive.

VOC's all-point (and VOC2007's 11-point) interpolation is integrated here from pycocotools'
per-image matches, since COCOeval itself samples precision at 101 recall points.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_iou

GroundTruth = dict[str, list[list[float]]]
DetectionRow = tuple[str, int, float, float, float, float, float]
COCO_IOUS = np.linspace(0.5, 0.95, 10)
RECALL_IOUS = (0.5, 0.7)


def box_rows(target: dict[str, torch.Tensor]) -> list[list[float]]:
    """A dataset target as ground-truth rows [x1, y1, x2, y2, class_id, difficult]."""
    return [[*box, int(label), int(difficult)] for box, label, difficult in
            zip(target["boxes"].tolist(), target["labels"].tolist(), target["difficult"].tolist())]


def detection_rows(image_id: str, boxes: torch.Tensor, scores: torch.Tensor,
                   labels: torch.Tensor) -> list[DetectionRow]:
    return [(image_id, int(c), float(s), *map(float, b)) for b, s, c in
            zip(boxes.tolist(), scores.tolist(), labels.tolist())]


def _coco(images: list[dict[str, Any]], annotations: list[dict[str, Any]], num_classes: int) -> COCO:
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": c} for c in range(1, num_classes + 1)]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def _xywh(x1: float, y1: float, x2: float, y2: float) -> list[float]:
    return [x1, y1, x2 - x1, y2 - y1]


def run_cocoeval(ground_truth: GroundTruth, detections: Iterable[DetectionRow], num_classes: int,
                 iou_thresholds: Sequence[float] = tuple(COCO_IOUS), max_detections: int = 100) -> COCOeval:
    """COCOeval, evaluated and accumulated, over the whole area range and at most `max_detections` per image."""
    index = {image_id: i + 1 for i, image_id in enumerate(sorted(ground_truth))}
    images = [{"id": i} for i in index.values()]
    gt_annotations = []
    for image_id, rows in ground_truth.items():
        for x1, y1, x2, y2, class_id, difficult in rows:
            gt_annotations.append({
                "id": len(gt_annotations) + 1, "image_id": index[image_id], "category_id": int(class_id),
                "bbox": _xywh(x1, y1, x2, y2), "area": (x2 - x1) * (y2 - y1), "iscrowd": int(bool(difficult))})
    dt_annotations = []
    for image_id, class_id, score, x1, y1, x2, y2 in detections:
        if image_id not in index:
            raise ValueError(f"detection for unknown image id {image_id!r}")
        if not 1 <= int(class_id) <= num_classes:
            raise ValueError(f"detection on image {image_id!r}: class_id {class_id} outside 1..{num_classes}")
        dt_annotations.append({
            "id": len(dt_annotations) + 1, "image_id": index[image_id], "category_id": int(class_id),
            "bbox": _xywh(x1, y1, x2, y2), "area": (x2 - x1) * (y2 - y1), "score": float(score), "iscrowd": 0})
    evaluator = COCOeval(_coco(images, gt_annotations, num_classes), _coco(images, dt_annotations, num_classes), "bbox")
    evaluator.params.iouThrs = np.asarray(iou_thresholds, dtype=float)
    evaluator.params.maxDets = [max_detections]
    evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0.0, 1e12]], ["all"]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def _interpolated_ap(recall: np.ndarray, precision: np.ndarray, eleven_point: bool) -> float:
    """The VOC devkit's AP from a ranked list's recall and precision."""
    if eleven_point:
        return float(np.mean([precision[recall >= t].max(initial=0.0) for t in np.linspace(0, 1, 11)]))
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the precision envelope
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def voc_average_precision(evaluator: COCOeval, iou_index: int, eleven_point: bool = False) -> list[float]:
    """Per class (in catIds order) AP at iouThrs[iou_index] from COCOeval's matches; NaN where a class has no box."""
    params = evaluator.params
    n_images, max_det = len(params.imgIds), params.maxDets[-1]
    result = []
    for k in range(len(params.catIds)):
        # evalImgs is ordered category, area range (one), image; None where an image has neither kind of box
        evals = [e for e in evaluator.evalImgs[k * n_images:(k + 1) * n_images] if e is not None]
        positives = sum(int(np.count_nonzero(e["gtIgnore"] == 0)) for e in evals)
        if positives == 0:
            result.append(float("nan"))
            continue
        scores = np.concatenate([e["dtScores"][:max_det] for e in evals])
        order = np.argsort(-scores, kind="mergesort")  # as COCOeval.accumulate ranks them
        matched = np.concatenate([e["dtMatches"][iou_index, :max_det] for e in evals])[order] > 0
        ignored = np.concatenate([e["dtIgnore"][iou_index, :max_det] for e in evals])[order].astype(bool)
        tp = np.cumsum(matched & ~ignored)
        fp = np.cumsum(~matched & ~ignored)
        keep = ~ignored  # an ignored detection adds no point to the curve
        recall = tp[keep] / positives
        precision = tp[keep] / np.maximum(tp[keep] + fp[keep], 1)
        result.append(_interpolated_ap(recall, precision, eleven_point))
    return result


def _nanmean(values: Iterable[float]) -> float:
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else 0.0


def evaluate_detections(ground_truth: GroundTruth, detections: Iterable[DetectionRow], num_classes: int,
                        class_names: Sequence[str] | None = None, max_detections: int = 100,
                        eleven_point: bool = False) -> dict[str, Any]:
    """mAP@0.5 the VOC way (all-point, or 11-point), COCO's mAP@0.5 and mAP@[.5:.95], and each class's AP.

    A class with no (non-difficult) box in the ground truth has no AP and is left out of the means.
    """
    names = list(class_names) if class_names else [str(c) for c in range(1, num_classes + 1)]
    evaluator = run_cocoeval(ground_truth, list(detections), num_classes, max_detections=max_detections)
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # iou x recall x class
    coco_ap = [float(np.mean(p[p > -1])) if (p > -1).any() else float("nan") for p in np.moveaxis(precision, 2, 0)]
    coco_ap50 = [float(np.mean(p[p > -1])) if (p > -1).any() else float("nan") for p in precision[0].T]
    voc_ap50 = voc_average_precision(evaluator, 0, eleven_point)
    return {
        "map50": _nanmean(voc_ap50), "map50_coco": _nanmean(coco_ap50), "map_coco": _nanmean(coco_ap),
        "interpolation": "11-point" if eleven_point else "all-point",
        "ap50": dict(zip(names, voc_ap50)), "ap_coco": dict(zip(names, coco_ap)),
    }


def proposal_recall(proposals: Sequence[torch.Tensor], ground_truth: Sequence[torch.Tensor],
                    thresholds: Sequence[float] = RECALL_IOUS) -> dict[str, float]:
    """The fraction of ground-truth boxes that some proposal covers with IoU >= each threshold."""
    best = [box_iou(gt, props).max(dim=1).values if len(props) else torch.zeros(len(gt))
            for props, gt in zip(proposals, ground_truth) if len(gt)]
    overlaps = torch.cat(best) if best else torch.zeros(0)
    return {f"recall@{t:g}": float((overlaps >= t).float().mean()) if len(overlaps) else 0.0 for t in thresholds}
