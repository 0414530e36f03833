"""Detection scores: VOC mAP@0.5, COCO mAP@[.5:.95] (both by COCO's matching), and proposal recall.

One format serves the worker and the challenge server alike:
ground truth is `{image_id: [[x1, y1, x2, y2, class_id, difficult], ...]}` (what a dataset's
`test_labels` returns, by workers.datasets.base.box_rows), detections are rows `(image_id, class_id, score, x1, y1, x2, y2)` (the
columns of predictions.csv). Boxes are continuous pixel coordinates; class ids run 1..C.

faster-coco-eval does the matching: pycocotools' COCOeval with the per-image matching and the
accumulation in C++ (the same greedy matching and the same precision arrays; the tests compare
with pycocotools itself). Difficult boxes go in as COCO `iscrowd`, so a detection on one
neither counts as a true positive nor as a false one, and the box is not needed for recall
(VOC's rule). One difference from the VOC devkit remains: COCO measures overlap with a crowd
box as intersection over the detection's area, so a small detection inside a difficult box
is ignored where the devkit would count it a false positive.

VOC's all-point (and VOC2007's 11-point) interpolation is integrated here from COCO's matches
at IoU 0.5, since COCOeval itself samples precision at 101 recall points.

The challenge server scores with this module: it imports no torch (numpy and faster-coco-eval
only); proposal recall, a worker's figure, imports torch when it runs.
"""
from __future__ import annotations

import contextlib
import gc
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

if TYPE_CHECKING:
    import torch

GroundTruth = dict[str, list[list[float]]]
DetectionRow = tuple[str, int, float, float, float, float, float]
COCO_IOUS = np.linspace(0.5, 0.95, 10)
RECALL_IOUS = (0.5, 0.7)
# Proposal budgets of the recall-against-count curve (Hosang et al., 2015): R-CNN's 2,000 and fewer.
RECALL_COUNTS = (10, 20, 50, 100, 200, 500, 1000, 2000)
VOC_IOU = 0.5
AREA_RANGE = (0.0, 1e12)  # COCO's "all"; a box of negative area (x2 < x1) falls outside it and is ignored


def detection_rows(image_id: str, boxes: torch.Tensor, scores: torch.Tensor,
                   labels: torch.Tensor) -> list[DetectionRow]:
    return [(image_id, int(c), float(s), *map(float, b)) for b, s, c in
            zip(boxes.tolist(), scores.tolist(), labels.tolist())]


def _quiet(*_args: Any, **_kwargs: Any) -> None:
    pass


def _coco(images: list[dict[str, Any]], annotations: list[dict[str, Any]], num_classes: int) -> COCO:
    coco = COCO(print_function=_quiet)
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": c} for c in range(1, num_classes + 1)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while COCO's hundreds of thousands of small dicts are built: the
    collector would walk them (and everything else alive) over and over, which costs more than the building."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True)
class _Annotations:
    """Both sides as COCO datasets, and the columns the VOC integration needs (annotation id i + 1 is row i)."""

    gt: COCO
    dt: COCO
    gt_class: np.ndarray
    gt_ignored: np.ndarray  # crowd (difficult), or an area outside AREA_RANGE: COCO's gtIgnore
    dt_image: np.ndarray  # position of the detection's image in the sorted image ids
    dt_class: np.ndarray
    dt_score: np.ndarray
    dt_outside: np.ndarray  # an area outside AREA_RANGE: ignored unless matched


def _annotations(ground_truth: GroundTruth, detections: Iterable[DetectionRow], num_classes: int) -> _Annotations:
    index = {image_id: i + 1 for i, image_id in enumerate(sorted(ground_truth))}
    images = [{"id": i} for i in index.values()]
    gt_rows = [(index[image_id], *row) for image_id, rows in ground_truth.items() for row in rows]
    gt_annotations = [{"id": n, "image_id": image, "category_id": int(class_id), "bbox": [x1, y1, x2 - x1, y2 - y1],
                       "area": (x2 - x1) * (y2 - y1), "iscrowd": int(bool(difficult))}
                      for n, (image, x1, y1, x2, y2, class_id, difficult) in enumerate(gt_rows, 1)]
    columns = list(zip(*detections)) or [()] * 7
    image_ids, (x1, y1, x2, y2) = columns[0], (np.asarray(c, dtype=np.float64) for c in columns[3:])
    dt_image = np.fromiter((index.get(i, 0) for i in image_ids), dtype=np.int64, count=len(image_ids))
    dt_class = np.asarray(columns[1], dtype=np.float64).astype(np.int64)  # int() of the row's value, as before
    dt_score = np.asarray(columns[2], dtype=np.float64)
    unknown = np.flatnonzero(dt_image == 0)
    if unknown.size:
        raise ValueError(f"detection for unknown image id {image_ids[unknown[0]]!r}")
    outside = np.flatnonzero((dt_class < 1) | (dt_class > num_classes))
    if outside.size:
        row = int(outside[0])
        raise ValueError(f"detection on image {image_ids[row]!r}: class_id {columns[1][row]} outside 1..{num_classes}")
    w, h = x2 - x1, y2 - y1
    area = w * h
    dt_annotations = [{"id": n, "image_id": image, "category_id": class_id, "bbox": [a, b, c, d], "area": area,
                       "score": score, "iscrowd": 0}
                      for n, image, class_id, a, b, c, d, area, score in
                      zip(range(1, len(dt_image) + 1), dt_image.tolist(), dt_class.tolist(), x1.tolist(), y1.tolist(),
                          w.tolist(), h.tolist(), area.tolist(), dt_score.tolist())]
    gt_area = np.array([a["area"] for a in gt_annotations], dtype=np.float64)
    gt_ignored = np.array([a["iscrowd"] for a in gt_annotations], dtype=bool) | _outside(gt_area)
    return _Annotations(
        _coco(images, gt_annotations, num_classes), _coco(images, dt_annotations, num_classes),
        np.array([a["category_id"] for a in gt_annotations], dtype=np.int64), gt_ignored,
        dt_image, dt_class, dt_score, _outside(area))


def _outside(area: np.ndarray) -> np.ndarray:
    return (area < AREA_RANGE[0]) | (area > AREA_RANGE[1])


def _evaluator(annotations: _Annotations, iou_thresholds: Sequence[float], max_detections: int) -> COCOeval_faster:
    evaluator = COCOeval_faster(annotations.gt, annotations.dt, "bbox", print_function=_quiet)
    evaluator.params.iouThrs = np.asarray(iou_thresholds, dtype=float)
    evaluator.params.maxDets = [max_detections]
    evaluator.params.areaRng, evaluator.params.areaRngLbl = [list(AREA_RANGE)], ["all"]
    return evaluator


def _run(evaluator: COCOeval_faster) -> COCOeval_faster:
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


def voc_average_precision(annotations: _Annotations, matched: dict[str, float], num_classes: int,
                          max_detections: int, eleven_point: bool = False) -> list[float]:
    """Per class (1..C) AP from COCO's matches at one IoU threshold; NaN where a class has no (non-difficult) box.

    `matched` is faster-coco-eval's "dtid_gtid" -> IoU for that threshold alone. The ranking is
    COCOeval's: per image and class the best `max_detections` by score (stable), then all of a
    class's detections by score, ties in image order, then in the file's order.
    """
    n = len(annotations.dt_score)
    gt_of = np.zeros(n, dtype=np.int64)  # matched ground-truth id, 0 for none
    for key in matched:
        dt_id, gt_id = key.split("_", 1)
        gt_of[int(dt_id) - 1] = int(gt_id)
    is_matched = gt_of > 0
    ignored = ~is_matched & annotations.dt_outside  # as COCOeval's dtIgnore:
    ignored[is_matched] = annotations.gt_ignored[gt_of[is_matched] - 1]  # matched to a difficult box
    # The best max_detections of each image and class, as COCOeval keeps them.
    order = np.lexsort((np.arange(n), -annotations.dt_score, annotations.dt_class, annotations.dt_image))
    group = annotations.dt_image[order] * (num_classes + 1) + annotations.dt_class[order]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if n else np.zeros(0, dtype=np.int64)
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    kept = np.zeros(n, dtype=bool)
    kept[order[rank < max_detections]] = True
    positives = np.bincount(annotations.gt_class[~annotations.gt_ignored], minlength=num_classes + 1)
    ranked = np.lexsort((np.arange(n), annotations.dt_image, -annotations.dt_score, annotations.dt_class))
    ranked = ranked[kept[ranked] & ~ignored[ranked]]  # an ignored detection adds no point to the curve
    bounds = np.searchsorted(annotations.dt_class[ranked], np.arange(1, num_classes + 2))
    result = []
    for c in range(1, num_classes + 1):
        if positives[c] == 0:
            result.append(float("nan"))
            continue
        hits = is_matched[ranked[bounds[c - 1]:bounds[c]]]
        tp = np.cumsum(hits)
        fp = np.cumsum(~hits)
        recall = tp / positives[c]
        precision = tp / np.maximum(tp + fp, 1)
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
    with _gc_paused():
        annotations = _annotations(ground_truth, detections, num_classes)
        evaluator = _run(_evaluator(annotations, COCO_IOUS, max_detections))
        # VOC needs the matches at IoU 0.5 alone; a second pass reuses the first one's IoUs.
        at_voc_iou = _evaluator(annotations, [VOC_IOU], max_detections)
        at_voc_iou.computeIoU = lambda image_id, class_id: evaluator.ious[image_id, class_id]
        matched = _run(at_voc_iou).eval["matched"]
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # iou x recall x class
    coco_ap = [float(np.mean(p[p > -1])) if (p > -1).any() else float("nan") for p in np.moveaxis(precision, 2, 0)]
    coco_ap50 = [float(np.mean(p[p > -1])) if (p > -1).any() else float("nan") for p in precision[0].T]
    voc_ap50 = voc_average_precision(annotations, matched, num_classes, max_detections, eleven_point)
    return {
        "map50": _nanmean(voc_ap50), "map50_coco": _nanmean(coco_ap50), "map_coco": _nanmean(coco_ap),
        "interpolation": "11-point" if eleven_point else "all-point",
        "ap50": dict(zip(names, voc_ap50)), "ap_coco": dict(zip(names, coco_ap)),
    }


def proposal_recall(proposals: Sequence[torch.Tensor], ground_truth: Sequence[torch.Tensor],
                    thresholds: Sequence[float] = RECALL_IOUS) -> dict[str, float]:
    """The fraction of ground-truth boxes that some proposal covers with IoU >= each threshold."""
    import torch
    from torchvision.ops import box_iou

    best = [box_iou(gt, props).max(dim=1).values if len(props) else torch.zeros(len(gt))
            for props, gt in zip(proposals, ground_truth) if len(gt)]
    overlaps = torch.cat(best) if best else torch.zeros(0)
    return {f"recall@{t:g}": float((overlaps >= t).float().mean()) if len(overlaps) else 0.0 for t in thresholds}


def recall_by_count(proposals: Sequence[torch.Tensor], ground_truth: Sequence[torch.Tensor],
                    counts: Sequence[int] = RECALL_COUNTS, iou: float = 0.5) -> dict[str, float]:
    """Recall at IoU `iou` when each image keeps only its first n proposals (best first), for each n up to the
    most any image has: keys "recall@0.5@n". One IoU matrix per image; a running maximum over its proposals
    gives every n at once."""
    import torch
    from torchvision.ops import box_iou

    most = max((len(p) for p in proposals), default=0)
    budgets = [n for n in counts if n <= most] or ([most] if most else [])
    covered = {n: 0 for n in budgets}
    boxes = 0
    for props, gt in zip(proposals, ground_truth):
        if not len(gt):
            continue
        boxes += len(gt)
        if not len(props):
            continue
        running = torch.cummax(box_iou(gt, props), dim=1).values  # [g, j]: best IoU among the first j + 1
        for n in budgets:
            covered[n] += int((running[:, min(n, len(props)) - 1] >= iou).sum())
    return {f"recall@{iou:g}@{n}": covered[n] / boxes if boxes else 0.0 for n in budgets}
