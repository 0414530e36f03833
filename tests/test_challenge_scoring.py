"""Scoring: top-k error and its bootstrap interval, mAP, each checked against an independent computation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import top_k_accuracy_score
from torchmetrics.detection import MeanAveragePrecision

from leaderboard.scoring import (
    bootstrap_errors,
    classification_scores,
    detection_scores,
    metric_value,
    primary_score,
    topk_errors,
)
from leaderboard.submissions import Detections


def random_guesses(n: int, n_classes: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    scores = rng.random((n, n_classes))
    # A boost for the true class on some images, so that the errors are not all near 1 - k / n_classes.
    scores[np.arange(n), labels] += rng.random(n) < 0.3
    guesses = np.argsort(-scores, axis=1)[:, :k]
    return guesses, labels


@pytest.mark.parametrize("k", [1, 3, 5])
def test_topk_errors_match_a_loop_and_sklearn(k: int) -> None:
    n_classes = 20
    guesses, labels = random_guesses(700, n_classes, k, seed=k)
    assert all(len(set(row)) == k for row in guesses.tolist())
    errors = topk_errors(guesses, labels)
    for j in range(1, 6):
        by_loop = sum(label not in row[:j] for row, label in zip(guesses.tolist(), labels.tolist())) / len(labels)
        assert errors[j - 1] == pytest.approx(by_loop, abs=1e-12)
    # sklearn ranks class scores: give the guesses descending scores, every other class none.
    scores = np.zeros((len(labels), n_classes))
    np.put_along_axis(scores, guesses, np.arange(k, 0, -1, dtype=float)[None], axis=1)
    for j in range(1, k + 1):
        assert errors[j - 1] == pytest.approx(1 - top_k_accuracy_score(labels, scores, k=j, labels=range(n_classes)))


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_n() -> None:
    widths = []
    for n in (100, 1_000, 10_000):
        guesses, labels = random_guesses(n, 50, 5, seed=n)
        scores = classification_scores(guesses, labels)
        for j in range(1, 6):
            low, high = scores[f"top{j}_err_ci"]
            assert low <= scores[f"top{j}_err"] <= high
        widths.append(np.subtract(*scores["top1_err_ci"][::-1]))
    assert widths[0] > 2.5 * widths[1] > 6 * widths[2] > 0  # about 1 / sqrt(n)
    assert scores["ci"]["resamples"] == 1000 and scores["ci"]["level"] == 0.95


def test_bootstrap_matches_resampling_images_explicitly() -> None:
    guesses, labels = random_guesses(2_000, 30, 5, seed=7)
    fast = bootstrap_errors(guesses, labels, resamples=4000, seed=1)
    rng = np.random.default_rng(2)
    explicit = np.stack([topk_errors(guesses[idx], labels[idx])
                         for idx in rng.integers(0, len(labels), size=(4000, len(labels)))])
    for q in (0.025, 0.5, 0.975):
        np.testing.assert_allclose(np.quantile(fast, q, axis=0), np.quantile(explicit, q, axis=0), atol=0.006)
    np.testing.assert_allclose(fast.std(axis=0), explicit.std(axis=0), rtol=0.08)


def test_bootstrap_is_reproducible_and_consistent_across_k() -> None:
    guesses, labels = random_guesses(500, 10, 5, seed=3)
    a, b = bootstrap_errors(guesses, labels), bootstrap_errors(guesses, labels)
    np.testing.assert_array_equal(a, b)
    assert (np.diff(a, axis=1) <= 0).all()  # within each resample, top-(k+1) error <= top-k error


def test_fewer_guesses_keep_the_top_k_error_beyond_k() -> None:
    guesses, labels = random_guesses(300, 10, 2, seed=4)
    errors = topk_errors(guesses, labels)
    assert errors[2] == errors[3] == errors[4] == errors[1]


def test_primary_score_is_lower_is_better() -> None:
    assert primary_score("top5_err", 0.2) == 0.2 and metric_value("top5_err", 0.2) == 0.2
    assert primary_score("map50", 0.75) == pytest.approx(0.25) and metric_value("map50", 0.25) == pytest.approx(0.75)


# --- detection ---------------------------------------------------------------------------

CLASSES = ["car", "person", "dog"]  # detection class ids 1..3; 0 is the detectors' background


def as_detections(rows: np.ndarray) -> Detections:
    """Rows (image index, x1, y1, x2, y2, class id, score) as the validator returns them."""
    rows = np.asarray(rows, dtype=float)
    return Detections(rows[:, 0].astype(np.int64), rows[:, 5].astype(np.int64), rows[:, 6], rows[:, 1:5], len(rows))


def random_scene(seed: int, n_images: int = 12) -> tuple[np.ndarray, list[list[list[float]]], Detections]:
    """Ground truth and noisy detections: jittered true boxes, some missed, some mislabelled, some false."""
    rng = np.random.default_rng(seed)
    truth, dets = [], []
    for image in range(n_images):
        boxes = []
        for _ in range(rng.integers(0, 4)):
            x, y = rng.uniform(0, 200, 2)
            w, h = rng.uniform(10, 60, 2)
            cls = int(rng.integers(1, 4))
            boxes.append([x, y, x + w, y + h, cls, 0])
            if rng.random() < 0.8:
                jitter = rng.normal(0, 4, 4)
                dets.append([image, x + jitter[0], y + jitter[1], x + w + abs(jitter[2]) + 1,
                             y + h + abs(jitter[3]) + 1, cls if rng.random() < 0.85 else cls % 3 + 1, rng.random()])
        for _ in range(rng.integers(0, 3)):
            x, y = rng.uniform(0, 200, 2)
            dets.append([image, x, y, x + rng.uniform(5, 50), y + rng.uniform(5, 50), int(rng.integers(1, 4)),
                         rng.random()])
        truth.append(boxes)
    ids = np.array([f"test_{i:06d}" for i in range(n_images)])
    return ids, truth, as_detections(np.array(dets))


def torchmetrics_map(truth, dets: Detections) -> dict[str, float]:
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")
    preds, targets = [], []
    for image, boxes in enumerate(truth):
        mine = dets.image_index == image
        preds.append({"boxes": torch.tensor(dets.boxes[mine]), "scores": torch.tensor(dets.score[mine]),
                      "labels": torch.tensor(dets.class_id[mine])})
        gt = np.array(boxes, dtype=np.float64).reshape(-1, 6)
        targets.append({"boxes": torch.tensor(gt[:, :4]), "labels": torch.tensor(gt[:, 4]).long(),
                        "iscrowd": torch.tensor(gt[:, 5]).long()})
    metric.update(preds, targets)
    return {k: float(v) for k, v in metric.compute().items() if v.numel() == 1}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coco_map_agrees_with_torchmetrics(seed: int) -> None:
    ids, truth, dets = random_scene(seed)
    mine = detection_scores(dets, ids, truth, CLASSES)
    theirs = torchmetrics_map(truth, dets)
    assert 0.05 < mine["map50_coco"] < 0.99
    assert mine["map50_coco"] == pytest.approx(theirs["map_50"], abs=1e-6)
    assert mine["map_coco"] == pytest.approx(theirs["map"], abs=1e-6)


def test_voc_map_is_the_all_point_area_under_the_ranked_list() -> None:
    ids = np.array(["test_000000", "test_000001"])
    truth = [[[0, 0, 10, 10, 1, 0]], [[20, 20, 30, 30, 1, 0]]]
    # Ranked: a hit, a false positive, a hit. Precision/recall: (1, 0.5), (0.5, 0.5), (2/3, 1).
    dets = as_detections([[0, 0, 0, 10, 10, 1, 0.9], [0, 50, 50, 60, 60, 1, 0.8], [1, 20, 20, 30, 30, 1, 0.7]])
    scores = detection_scores(dets, ids, truth, ["thing"])
    assert scores["map50"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert scores["map50_coco"] == pytest.approx((51 * 1 + 50 * 2 / 3) / 101)  # COCO samples 101 recall points


def test_perfect_detections_score_one_and_difficult_objects_are_ignored() -> None:
    ids = np.array(["test_000000", "test_000001"])
    truth = [[[10, 10, 50, 60, 1, 0], [100, 100, 140, 150, 2, 0]], [[5, 5, 30, 30, 3, 0], [60, 60, 90, 90, 3, 1]]]
    perfect = np.array([[0, 10, 10, 50, 60, 1, 0.9], [0, 100, 100, 140, 150, 2, 0.8], [1, 5, 5, 30, 30, 3, 0.7]])
    scores = detection_scores(as_detections(perfect), ids, truth, CLASSES)
    assert scores["map50"] == pytest.approx(1.0) and scores["map_coco"] == pytest.approx(1.0)
    assert scores["ap50_per_class"] == pytest.approx({"car": 1.0, "person": 1.0, "dog": 1.0})
    # A confident detection on the difficult object is neither a hit nor a false positive.
    on_difficult = np.vstack([perfect, [1, 60, 60, 90, 90, 3, 0.95]])
    assert detection_scores(as_detections(on_difficult), ids, truth, CLASSES)["map50"] == pytest.approx(1.0)
    # A confident false positive does cost precision.
    false_positive = np.vstack([perfect, [1, 150, 150, 190, 190, 3, 0.95]])
    assert detection_scores(as_detections(false_positive), ids, truth, CLASSES)["ap50_per_class"]["dog"] < 0.9
    # No detections at all: zero, not an error.
    nothing = detection_scores(as_detections(np.zeros((0, 7))), ids, truth, CLASSES)
    assert nothing["map50"] == nothing["map_coco"] == 0.0 and nothing["n_detections"] == 0
    # A class with no objects in the test set has no AP (null in JSON) rather than a zero.
    assert detection_scores(as_detections(perfect), ids, truth, CLASSES + ["cat"])["ap50_per_class"]["cat"] is None
