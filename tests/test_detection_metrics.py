"""workers.detection.map_metrics against pycocotools itself, detection by detection.

The scorer runs COCO's matching in faster-coco-eval's C++; these tests rebuild every number the
slow way, from pycocotools' COCOeval and its per-image matches, on files with difficult boxes,
tied scores, inverted boxes and more detections per image than COCO keeps.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from workers.detection.map_metrics import COCO_IOUS, _interpolated_ap, evaluate_detections


def pycocotools_eval(ground_truth: dict, detections: list, num_classes: int, max_detections: int) -> COCOeval:
    index = {image_id: k + 1 for k, image_id in enumerate(sorted(ground_truth))}
    rows = [(index[i], *row) for i, rows in ground_truth.items() for row in rows]
    gt_annotations = [{"id": n, "image_id": i, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1],
                       "area": (x2 - x1) * (y2 - y1), "iscrowd": int(d)}
                      for n, (i, x1, y1, x2, y2, c, d) in enumerate(rows, 1)]
    dt_annotations = [{"id": n, "image_id": index[i], "category_id": c, "bbox": [x1, y1, x2 - x1, y2 - y1],
                       "area": (x2 - x1) * (y2 - y1), "score": s, "iscrowd": 0}
                      for n, (i, c, s, x1, y1, x2, y2) in enumerate(detections, 1)]
    cocos = []
    for listed in (gt_annotations, dt_annotations):
        coco = COCO()
        coco.dataset = {"images": [{"id": v} for v in index.values()], "annotations": listed,
                        "categories": [{"id": c} for c in range(1, num_classes + 1)]}
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        cocos.append(coco)
    evaluator = COCOeval(*cocos, "bbox")
    evaluator.params.iouThrs = COCO_IOUS.copy()
    evaluator.params.maxDets = [max_detections]
    evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0.0, 1e12]], ["all"]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def reference_voc_ap(evaluator: COCOeval, eleven_point: bool) -> list[float]:
    """VOC AP per class at IoU 0.5 from pycocotools' evalImgs (the scorer's former implementation)."""
    params = evaluator.params
    n_images, max_det = len(params.imgIds), params.maxDets[-1]
    result = []
    for k in range(len(params.catIds)):
        evals = [e for e in evaluator.evalImgs[k * n_images:(k + 1) * n_images] if e is not None]
        positives = sum(int(np.count_nonzero(e["gtIgnore"] == 0)) for e in evals)
        if positives == 0:
            result.append(float("nan"))
            continue
        scores = np.concatenate([e["dtScores"][:max_det] for e in evals])
        order = np.argsort(-scores, kind="mergesort")
        matched = np.concatenate([e["dtMatches"][0, :max_det] for e in evals])[order] > 0
        ignored = np.concatenate([e["dtIgnore"][0, :max_det] for e in evals])[order].astype(bool)
        tp = np.cumsum(matched & ~ignored)[~ignored]
        fp = np.cumsum(~matched & ~ignored)[~ignored]
        result.append(_interpolated_ap(tp / positives, tp / np.maximum(tp + fp, 1), eleven_point))
    return result


def scene(seed: int, per_image: int, tied: bool, inverted: bool, classes: int = 4):
    rng = np.random.default_rng(seed)
    ground_truth, detections = {}, []
    for i in range(40):
        k = int(rng.integers(0, 5))
        corner = rng.uniform(0, 200, (k, 2))
        boxes = np.c_[corner, corner + rng.uniform(5, 80, (k, 2))]
        ground_truth[f"img{i:03d}"] = [[*map(float, b), int(rng.integers(1, classes + 1)), int(rng.random() < 0.25)]
                                       for b in boxes]
        for _ in range(int(rng.integers(0, per_image))):
            if k and rng.random() < 0.6:
                box = boxes[rng.integers(k)] + rng.normal(0, 6, 4)
            else:
                p = rng.uniform(0, 200, 2)
                box = np.r_[p, p + rng.uniform(2, 80, 2)]
            if not inverted:
                box[2:] = np.maximum(box[2:], box[:2] + 1)
            score = round(float(rng.random()), 1) if tied else float(rng.random())
            detections.append((f"img{i:03d}", int(rng.integers(1, classes + 1)), score, *map(float, box)))
    return ground_truth, detections


@pytest.mark.parametrize("seed, per_image, tied, inverted, max_detections", [
    (0, 30, False, False, 100), (1, 30, True, False, 100), (2, 200, True, False, 100), (3, 60, True, True, 5),
    (4, 30, False, True, 100), (5, 200, False, False, 7),
])
def test_every_figure_equals_pycocotools(seed, per_image, tied, inverted, max_detections) -> None:
    ground_truth, detections = scene(seed, per_image, tied, inverted)
    reference = pycocotools_eval(ground_truth, detections, 4, max_detections)
    precision = reference.eval["precision"][:, :, :, 0, -1]
    for eleven_point in (False, True):
        ours = evaluate_detections(ground_truth, detections, 4, max_detections=max_detections,
                                   eleven_point=eleven_point)
        voc = reference_voc_ap(reference, eleven_point)
        assert list(ours["ap50"].values()) == pytest.approx(voc, abs=1e-12, nan_ok=True)
        coco = [float(np.mean(p[p > -1])) if (p > -1).any() else float("nan") for p in np.moveaxis(precision, 2, 0)]
        assert list(ours["ap_coco"].values()) == pytest.approx(coco, abs=1e-12, nan_ok=True)
        assert ours["map50"] == pytest.approx(np.nanmean(voc), abs=1e-12)
