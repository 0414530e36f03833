"""Scores validated submissions against the held test labels: the only code that reads `held_labels`.

Convention: `Submission.primary_score` is lower-is-better for every metric, so one ORDER BY ranks
any challenge. Errors (top-k) are stored as they are; mAP is stored as 1 - mAP. `metric_value`
turns a primary score back into the metric's own value for display.

What is scored, and how, is workers.metric_registry's: each task's metrics in declaration order, with
a percentile bootstrap interval for those that declare a resampler.

Nothing here puts a held label into an exception or a log line: failures inside scoring surface
as a generic ScoringError (ARCHITECTURE.md invariant 1).
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from db.schema import Challenge, HeldLabel
from leaderboard.errors import ChallengeError, ScoringError
from leaderboard.submissions import Classifications, Detections, Parsed
from workers.metric_registry import (
    PRIMARY,
    Metric,
    first_hit_rank,  # noqa: F401  (re-exported: leaderboard.scoring.first_hit_rank, as before)
    lower_is_better,
    rank_counts,
    resample_rank_counts,
    task_metrics,
    top_k_error,
)
from workers.prediction_format import MAX_GUESSES

log = logging.getLogger(__name__)

METRIC_FOR_TASK = PRIMARY  # the metric a new challenge of each task ranks by
GUESSES = MAX_GUESSES  # ILSVRC reports top-1 and top-5; a file with k < 5 guesses misses on the rest
RESAMPLES = 1000
SEED = 0
LEVEL = 0.95


@dataclass(frozen=True)
class Scored:
    primary_score: float  # lower is better; on the public part where the challenge has a private one
    scores: dict[str, Any]
    # The private part's score (leaderboard.parts): stored apart, never shown before close. None: no private part.
    private: Scored | None = field(default=None, repr=False)


def primary_score(metric: str, value: float) -> float:
    return value if lower_is_better(metric) else 1.0 - value


def metric_value(metric: str, primary: float) -> float:
    """The metric's own value (e.g. mAP) from a stored primary score."""
    return primary if lower_is_better(metric) else 1.0 - primary


# --- the held labels -----------------------------------------------------------------------

def store_held_labels(session: Session, challenge_id: int, labels: Mapping[str, Any], task: str,
                      private: Collection[str] = ()) -> int:
    """Write a challenge's test labels (classification: class ids; detection: box lists), the ids in `private` in
    the private part and the others in the public one (leaderboard.parts); returns the count."""
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
    hidden = set(private)
    for row in rows:
        row["part"] = "private" if row["image_id"] in hidden else "public"
    session.execute(insert(HeldLabel), rows)
    return len(rows)


@dataclass(frozen=True, repr=False)  # repr=False: a debugger or a log line shows no labels
class _Truth:
    ids: np.ndarray  # sorted test ids
    values: Any  # labels (classification: an int64 array) or box lists (detection), aligned with ids
    private: np.ndarray | None = None  # bool, aligned with ids: the private part; None: every image is public


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
    rows = session.connection().execute(select(HeldLabel.image_id, column, HeldLabel.part)
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
    private = np.array([rows[i][2] == "private" for i in order], dtype=bool)
    private.setflags(write=False)
    truth = _Truth(ids, values, private if private.any() else None)
    with _TRUTH_LOCK:
        _TRUTH[key] = truth
        while len(_TRUTH) > _TRUTH_KEPT:
            _TRUTH.popitem(last=False)
    return truth


def stored_classifications(session: Session, challenge: Challenge, row: Any) -> tuple[np.ndarray, np.ndarray]:
    """A stored classification submission (`row`, its file_data loaded), parsed and checked against the held
    labels: its guesses (images x k, best first, in the sorted test ids' order) and the labels beside them. For
    the host's analyses of stored files (rank intervals, near-duplicates), in the process holding the labels' role."""
    from leaderboard.submissions import MAX_BYTES, validate

    truth = _truth(session, challenge)
    if row.file_data is None:
        raise ChallengeError(f"submission {row.id} has no stored file")
    parsed = validate(challenge.task, row.file_data, "stored-upload", truth.ids, list(challenge.class_names),
                      max(MAX_BYTES, len(row.file_data)))
    if not isinstance(parsed, Classifications):
        raise ChallengeError(f"submission {row.id} is not a classification file")
    return parsed.guesses, np.asarray(truth.values, dtype=np.int64)


def forget_held_labels() -> None:
    """Drop the cached labels, so the next scoring reads the table again (rescoring after a fix)."""
    with _TRUTH_LOCK:
        _TRUTH.clear()


def public_image_ids(session: Session, challenge: Challenge) -> np.ndarray:
    """The challenge's test ids, sorted. Public: they name the test images."""
    return _truth(session, challenge).ids


# --- scoring a submission ------------------------------------------------------------------

def public_mask(session: Session, challenge: Challenge) -> np.ndarray | None:
    """Positions of the public part in the sorted test ids (bool); None when every image is public."""
    private = _truth(session, challenge).private
    return None if private is None else ~private


def private_mask(session: Session, challenge: Challenge) -> np.ndarray | None:
    """Positions of the private part in the sorted test ids (bool); None when there is no private part."""
    return _truth(session, challenge).private


def _part_scores(challenge: Challenge, parsed: Parsed, truth: _Truth, keep: np.ndarray | None) -> dict[str, Any]:
    """The metrics on the images where `keep` is True (None: every image)."""
    values = truth.values
    if challenge.task == "classification" and isinstance(parsed, Classifications):
        guesses, labels = parsed.guesses, np.asarray(values, dtype=np.int64)
        if keep is not None:
            guesses, labels = guesses[keep], labels[keep]
        return classification_scores(guesses, labels)
    if challenge.task == "detection" and isinstance(parsed, Detections):
        if keep is None:
            return detection_scores(parsed, truth.ids, values, list(challenge.class_names))
        # Positions renumbered within the part; the other part's detections dropped.
        renumber = np.cumsum(keep) - 1
        inside = keep[parsed.image_index]
        part = Detections(renumber[parsed.image_index[inside]], parsed.class_id[inside], parsed.score[inside],
                          parsed.boxes[inside], parsed.n_rows)
        return detection_scores(part, truth.ids[keep], [v for v, k in zip(values, keep) if k],
                                list(challenge.class_names))
    raise TypeError("parsed file does not match the challenge's task")


def score_submission(session: Session, challenge: Challenge, parsed: Parsed) -> Scored:
    """Score a validated file for `challenge` on its public part, and on its private part where it has one (the
    same work for every file: nothing about the private score changes what a caller waits for or sees); any
    failure inside becomes a label-free ScoringError."""
    metric = challenge.metric
    try:
        truth = _truth(session, challenge)
        public = None if truth.private is None else ~truth.private
        scores = _part_scores(challenge, parsed, truth, public)
        hidden = None if truth.private is None else _part_scores(challenge, parsed, truth, truth.private)
    except Exception as exc:  # noqa: BLE001 - any failure, whatever its kind, must reach the caller label-free
        # Only the exception's type is logged: its message could quote held data.
        log.error("scoring a submission to %s failed (%s)", challenge.slug, type(exc).__name__)
        raise ScoringError(f"scoring failed on the server for challenge {challenge.slug!r}; "
                           f"the file was not counted") from None
    private = (None if hidden is None
               else Scored(primary_score(metric, float(hidden[metric])), {"metric": metric, **hidden}))
    return Scored(primary_score(metric, float(scores[metric])), {"metric": metric, **scores}, private)


# --- the registry's metrics with their bootstrap intervals ---------------------------------------

def registry_scores(metrics: list[Metric], evidence: Any, resamples: int = RESAMPLES, seed: int = SEED,
                    level: float = LEVEL) -> dict[str, Any]:
    """Each metric's value from the task's evidence, and `<name>_ci`, a percentile bootstrap interval,
    for those with a resampler."""
    scores: dict[str, Any] = {}
    draws: dict[Any, Any] = {}  # resampler -> resampled evidence: metrics that resample alike share the draws
    for metric in metrics:
        scores[metric.name] = float(metric.compute(evidence))
        if metric.bootstrap is not None:
            if metric.bootstrap not in draws:
                draws[metric.bootstrap] = metric.bootstrap(evidence, resamples, seed)
            low, high = np.quantile(metric.compute(draws[metric.bootstrap]), [(1 - level) / 2, (1 + level) / 2])
            scores[f"{metric.name}_ci"] = [float(low), float(high)]
    return scores


# --- classification: top-k error with bootstrap intervals ----------------------------------

def topk_errors(guesses: np.ndarray, labels: np.ndarray, top_k: int = GUESSES) -> np.ndarray:
    """Top-1..top-`top_k` error; beyond the file's k guesses the error stays at top-k."""
    return _errors_from_counts(rank_counts(guesses, labels), top_k)


def _errors_from_counts(counts: np.ndarray, top_k: int) -> np.ndarray:
    """counts[..., r]: images first hit at rank r (last: missed) -> errors for top-1..top-`top_k`."""
    return np.stack([top_k_error(counts, k) for k in range(1, top_k + 1)], axis=-1)


def bootstrap_errors(guesses: np.ndarray, labels: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED,
                     top_k: int = GUESSES) -> np.ndarray:
    """Top-k errors of `resamples` bootstrap resamples of the test images (resamples x top_k), drawn
    as the registry's classification metrics draw them (workers.metric_registry.resample_rank_counts)."""
    return _errors_from_counts(resample_rank_counts(rank_counts(guesses, labels), resamples, seed), top_k)


def classification_scores(guesses: np.ndarray, labels: np.ndarray, resamples: int = RESAMPLES,
                          seed: int = SEED, level: float = LEVEL) -> dict[str, Any]:
    """The classification metrics (top-1..top-5 error, ...) and their percentile bootstrap confidence
    intervals over test images."""
    # The ranks once: every metric and every resample comes from their counts.
    counts = rank_counts(guesses, labels)
    scores: dict[str, Any] = {"n_images": len(labels), "guesses": int(guesses.shape[1])}
    scores |= registry_scores(task_metrics("classification"), counts, resamples, seed, level)
    scores["ci"] = {"level": level, "resamples": resamples, "seed": seed,
                    "method": "percentile bootstrap over test images"}
    return scores


# --- detection: mAP, by the same code the workers evaluate with ---------------------------

def detection_scores(detections: Detections, ids: np.ndarray, truth: list[list[list[float]]],
                     class_names: list[str]) -> dict[str, Any]:
    """VOC mAP@0.5 (all-point), COCO's mAP@0.5 and mAP@[.5:.95], and each class's AP.

    `truth[i]` holds the boxes [x1, y1, x2, y2, class_id, difficult] of test image `ids[i]`.
    workers.detection.map_metrics does the work (COCO matching, in C++; difficult boxes as crowd
    regions), so a run's own evaluation and its score here cannot drift apart.
    """
    # Imported here: it pulls in faster-coco-eval, which classification challenges never need.
    from workers.detection.map_metrics import evaluate_detections

    ground_truth = {image_id: boxes or [] for image_id, boxes in zip(ids.tolist(), truth)}
    rows = zip(ids[detections.image_index].tolist(), detections.class_id.tolist(), detections.score.tolist(),
               *detections.boxes.T.tolist())
    result = evaluate_detections(ground_truth, rows, len(class_names), class_names)
    return {**registry_scores(task_metrics("detection"), result), "interpolation": result["interpolation"],
            # NaN (a class without boxes in the test set) is not JSON: it is stored as null.
            "ap50_per_class": {name: _finite_or_none(ap) for name, ap in result["ap50"].items()},
            "ap_coco_per_class": {name: _finite_or_none(ap) for name, ap in result["ap_coco"].items()},
            "n_images": len(ids), "n_detections": len(detections.score)}


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
