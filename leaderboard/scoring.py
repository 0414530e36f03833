"""Scores validated submissions against the held test labels: the only code that reads `held_labels`.

Convention: `Submission.primary_score` is lower-is-better for every metric, so one ORDER BY ranks
any challenge. Errors (top-k) are stored as they are; mAP is stored as 1 - mAP. `metric_value`
turns a primary score back into the metric's own value for display.

Nothing here puts a held label into an exception or a log line: failures inside scoring surface
as a generic ScoringError (DESIGN invariant 1).
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from db.schema import Challenge, HeldLabel
from leaderboard.errors import ChallengeError, ScoringError
from leaderboard.submissions import Classifications, Detections, Parsed

log = logging.getLogger(__name__)

METRIC_FOR_TASK = {"classification": "top5_err", "detection": "map50"}
HIGHER_IS_BETTER = frozenset({"map50", "map50_coco", "map_coco"})
TOP_K = 5  # ILSVRC reports top-1 and top-5; a file with k < 5 guesses misses on the rest
RESAMPLES = 1000
SEED = 0
LEVEL = 0.95


@dataclass(frozen=True)
class Scored:
    primary_score: float  # lower is better
    scores: dict[str, Any]


def primary_score(metric: str, value: float) -> float:
    return 1.0 - value if metric in HIGHER_IS_BETTER else value


def metric_value(metric: str, primary: float) -> float:
    """The metric's own value (e.g. mAP) from a stored primary score."""
    return 1.0 - primary if metric in HIGHER_IS_BETTER else primary


# --- the held labels -----------------------------------------------------------------------

def store_held_labels(session: Session, challenge_id: int, labels: Mapping[str, Any], task: str) -> int:
    """Write a challenge's test labels (classification: class ids; detection: box lists); returns the count."""
    if not labels:
        raise ChallengeError("the dataset's test split has no labels")
    if task not in METRIC_FOR_TASK:
        raise ChallengeError(f"no scorer for task {task!r}")
    try:
        if task == "classification":
            rows = [{"challenge_id": challenge_id, "image_id": str(i), "label": int(v), "boxes": None}
                    for i, v in labels.items()]
        else:
            rows = [{"challenge_id": challenge_id, "image_id": str(i), "label": None,
                     "boxes": [[float(x1), float(y1), float(x2), float(y2), int(c), int(bool(d))]
                               for x1, y1, x2, y2, c, d in boxes]}
                    for i, boxes in labels.items()]
    except (TypeError, ValueError):
        # The conversion's own message would quote the offending label.
        raise ChallengeError(f"the dataset's {task} test labels are malformed") from None
    session.execute(insert(HeldLabel), rows)
    return len(rows)


@dataclass(frozen=True, repr=False)  # repr=False: a debugger or a log line shows no labels
class _Truth:
    ids: np.ndarray  # sorted test ids
    values: Any  # labels (classification: an int64 array) or box lists (detection), aligned with ids


_TRUTH: OrderedDict[tuple[str, int, str], _Truth] = OrderedDict()
_TRUTH_LOCK = threading.Lock()
_TRUTH_KEPT = 4


def _truth(session: Session, challenge: Challenge) -> _Truth:
    """A challenge's ids and labels, read once per process: they never change once the challenge exists.

    Keyed by database, challenge and creation time, so a recreated database is not confused with the old one.
    """
    key = (session.get_bind().url.render_as_string(hide_password=True), challenge.id, str(challenge.created_at))
    with _TRUTH_LOCK:
        if key in _TRUTH:
            _TRUTH.move_to_end(key)
            return _TRUTH[key]
    column = HeldLabel.label if challenge.task == "classification" else HeldLabel.boxes
    # Core execution on the session's connection: the ORM's per-row loading costs 5x more on 50,000 rows.
    rows = session.connection().execute(select(HeldLabel.image_id, column)
                                        .where(HeldLabel.challenge_id == challenge.id)).all()
    ids = np.array([row[0] for row in rows], dtype=str)
    # Sorted in numpy, not by ORDER BY: a database collation could order the ids differently.
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    ids.setflags(write=False)  # shared by every upload (validation keeps an Arrow copy of a read-only array)
    values = [rows[i][1] for i in order]
    if challenge.task == "classification":
        try:
            values = np.asarray(values, dtype=np.int64)
            values.setflags(write=False)
        except (TypeError, ValueError):
            pass  # a missing label: left as read, so that scoring fails as a ScoringError
    truth = _Truth(ids, values)
    with _TRUTH_LOCK:
        _TRUTH[key] = truth
        while len(_TRUTH) > _TRUTH_KEPT:
            _TRUTH.popitem(last=False)
    return truth


def forget_held_labels() -> None:
    """Drop the cached labels, so the next scoring reads the table again (rescoring after a fix)."""
    with _TRUTH_LOCK:
        _TRUTH.clear()


def public_image_ids(session: Session, challenge: Challenge) -> np.ndarray:
    """The challenge's test ids, sorted. Public: they name the test images."""
    return _truth(session, challenge).ids


# --- scoring a submission ------------------------------------------------------------------

def score_submission(session: Session, challenge: Challenge, parsed: Parsed) -> Scored:
    """Score a validated file for `challenge`; any failure inside becomes a label-free ScoringError."""
    try:
        truth = _truth(session, challenge)
        if challenge.task == "classification" and isinstance(parsed, Classifications):
            scores = classification_scores(parsed.guesses, np.asarray(truth.values, dtype=np.int64))
        elif challenge.task == "detection" and isinstance(parsed, Detections):
            scores = detection_scores(parsed, truth.ids, truth.values, list(challenge.class_names))
        else:
            raise TypeError("parsed file does not match the challenge's task")
    except Exception as exc:
        # Only the exception's type is logged: its message could quote held data.
        log.error("scoring a submission to %s failed (%s)", challenge.slug, type(exc).__name__)
        raise ScoringError(f"scoring failed on the server for challenge {challenge.slug!r}; "
                           f"the file was not counted") from None
    metric = challenge.metric
    return Scored(primary_score(metric, float(scores[metric])), {"metric": metric, **scores})


# --- classification: top-k error with bootstrap intervals ----------------------------------

def first_hit_rank(guesses: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """For each image, the rank (0 = best guess) of the guess equal to its label; k when none is."""
    if guesses.shape[0] != labels.shape[0]:
        raise ValueError(f"{guesses.shape[0]} predictions for {labels.shape[0]} images")
    hit = guesses == labels[:, None]
    return np.where(hit.any(axis=1), hit.argmax(axis=1), guesses.shape[1])


def topk_errors(guesses: np.ndarray, labels: np.ndarray, top_k: int = TOP_K) -> np.ndarray:
    """Top-1..top-`top_k` error; beyond the file's k guesses the error stays at top-k."""
    k = guesses.shape[1]
    counts = np.bincount(first_hit_rank(guesses, labels), minlength=k + 1)
    return _errors_from_counts(counts, len(labels), top_k)


def _errors_from_counts(counts: np.ndarray, n: int, top_k: int) -> np.ndarray:
    """counts[..., r]: images first hit at rank r (last: missed) -> errors for top-1..top-`top_k`."""
    k = counts.shape[-1] - 1
    hits = np.cumsum(counts[..., :k], axis=-1)
    hits = np.concatenate([hits, np.repeat(hits[..., -1:], max(top_k - k, 0), axis=-1)], axis=-1)[..., :top_k]
    return 1.0 - hits / max(n, 1)


def bootstrap_errors(guesses: np.ndarray, labels: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED,
                     top_k: int = TOP_K) -> np.ndarray:
    """Top-k errors of `resamples` bootstrap resamples of the test images (resamples x top_k).

    Resampling n images with replacement and counting those first hit at each rank draws the
    count vector from Multinomial(n, observed rank frequencies); drawing that directly is the
    same bootstrap without materialising resamples x n indices (50M for ImageNet-sized sets).
    """
    counts = np.bincount(first_hit_rank(guesses, labels), minlength=guesses.shape[1] + 1)
    return _bootstrap_from_counts(counts, resamples, seed, top_k)


def _bootstrap_from_counts(counts: np.ndarray, resamples: int, seed: int, top_k: int) -> np.ndarray:
    n = int(counts.sum())
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, counts / max(n, 1), size=resamples)
    return _errors_from_counts(draws, n, top_k)


def classification_scores(guesses: np.ndarray, labels: np.ndarray, resamples: int = RESAMPLES,
                          seed: int = SEED, level: float = LEVEL) -> dict[str, Any]:
    """Top-1..top-5 error and their percentile bootstrap confidence intervals over test images."""
    # The ranks once: the errors and the bootstrap both come from their counts.
    counts = np.bincount(first_hit_rank(guesses, labels), minlength=guesses.shape[1] + 1)
    errors = _errors_from_counts(counts, len(labels), TOP_K)
    boot = _bootstrap_from_counts(counts, resamples, seed, TOP_K)
    low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2], axis=0)
    scores: dict[str, Any] = {"n_images": int(len(labels)), "guesses": int(guesses.shape[1])}
    for j in range(TOP_K):
        scores[f"top{j + 1}_err"] = float(errors[j])
        scores[f"top{j + 1}_err_ci"] = [float(low[j]), float(high[j])]
    scores["ci"] = {"level": level, "resamples": resamples, "seed": seed,
                    "method": "percentile bootstrap over test images"}
    return scores


# --- detection: mAP, by the same code the workers evaluate with ---------------------------

def detection_scores(detections: Detections, ids: np.ndarray, truth: list[list[list[float]]],
                     class_names: list[str]) -> dict[str, Any]:
    """VOC mAP@0.5 (all-point), COCO's mAP@0.5 and mAP@[.5:.95], and each class's AP.

    `truth[i]` holds the boxes [x1, y1, x2, y2, class_id, difficult] of test image `ids[i]`.
    workers.detection.metrics does the work (COCO matching, in C++; difficult boxes as crowd
    regions), so a run's own evaluation and its score here cannot drift apart.
    """
    # Imported here: it pulls in torch, which classification challenges never need.
    from workers.detection.metrics import evaluate_detections

    ground_truth = {image_id: boxes or [] for image_id, boxes in zip(ids.tolist(), truth)}
    rows = zip(ids[detections.image_index].tolist(), detections.class_id.tolist(), detections.score.tolist(),
               *detections.boxes.T.tolist())
    result = evaluate_detections(ground_truth, rows, len(class_names), class_names)
    return {"map50": result["map50"], "map50_coco": result["map50_coco"], "map_coco": result["map_coco"],
            "interpolation": result["interpolation"],
            # NaN (a class without boxes in the test set) is not JSON: it is stored as null.
            "ap50_per_class": {name: _finite_or_none(ap) for name, ap in result["ap50"].items()},
            "ap_coco_per_class": {name: _finite_or_none(ap) for name, ap in result["ap_coco"].items()},
            "n_images": len(ids), "n_detections": int(len(detections.score))}


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
