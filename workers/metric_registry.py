"""The metric registry: one declaration per metric; scoring, the database columns, the boards, the exports
and every display name follow from it.

A metric is a function of its task's *evidence*, what the test images add up to:

- classification: the rank counts (`rank_counts`): counts[r] images whose label is guess r (0 = the best
  guess), and in the last entry the images whose label is none of the k guesses. Every top-k error, and
  any other function of the first-hit ranks, follows from these k + 1 numbers; so does the bootstrap
  (`resample_rank_counts`).
- detection: the result dict of workers.detection.map_metrics.evaluate_detections (mAP needs the whole
  ranked list of detections, so it has no cheap bootstrap, and no interval).

A metric's `compute` works on the evidence with leading axes too (resamples x k + 1 counts), so that one
call scores every bootstrap resample.

What follows from the table: a submission's score keys (`<name>` and, with a bootstrap, `<name>_ci`), the
`runs` result columns the orchestrator writes (`column`), the challenge boards and their CSV/JSON exports
(`board`), the run lists and a team's history (`listed`), and the display names. Adding a metric is one
declaration in METRICS and a test; a `column` metric also needs its column in db/schema.py and a
migration, every other one lives in the scores' JSON.

numpy only: the leaderboard, the orchestrator and the workers all import it, and the challenge server
scores without torch.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from operator import itemgetter
from typing import Any

import numpy as np

Resampler = Callable[[Any, int, int], Any]  # (evidence, resamples, seed) -> evidence with a leading resample axis


@dataclass(frozen=True)
class Metric:
    name: str  # the key in scores and metrics JSON, and the `runs` column when `column`
    display: str  # a table's column header: "top-5 err"
    long_name: str  # in a sentence: "ranked by top-5 error"
    task: str  # "classification" or "detection", as workers.tasks names them
    compute: Callable[[Any], Any]  # the task's evidence -> the value (a fraction when unit is "%")
    bootstrap: Resampler | None = None  # resamples the evidence for a confidence interval; None: no interval
    unit: str = "%"  # "%": a fraction, shown as a percentage; "": shown as it is
    lower_is_better: bool = True
    column: bool = False  # has its own `runs` column (db/schema.py); otherwise it lives in JSON only
    board: bool = False  # a column of its task's challenge board and exports, after the primary metric
    listed: bool = False  # a column of the lists that mix runs or challenges (run tables, a team's history)

    @property
    def percent(self) -> bool:
        return self.unit == "%"


# --- classification evidence: the first-hit ranks, counted -----------------------------------------

def first_hit_rank(guesses: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """For each image, the rank (0 = best guess) of the guess equal to its label; k when none is."""
    if guesses.shape[0] != labels.shape[0]:
        raise ValueError(f"{guesses.shape[0]} predictions for {labels.shape[0]} images")
    hit = guesses == labels[:, None]
    return np.where(hit.any(axis=1), hit.argmax(axis=1), guesses.shape[1])


def rank_counts(guesses: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """counts[r]: images first hit at rank r; counts[k]: images missed by all k guesses."""
    return np.bincount(first_hit_rank(guesses, labels), minlength=guesses.shape[1] + 1)


def resample_rank_counts(counts: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """The rank counts of `resamples` bootstrap resamples of the test images (resamples x k + 1).

    Resampling n images with replacement and counting those first hit at each rank draws the count
    vector from Multinomial(n, observed rank frequencies); drawing that directly is the same bootstrap
    without materialising resamples x n indices (50M for ImageNet-sized sets).
    """
    n = int(counts.sum())
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, counts / max(n, 1), size=resamples)


def top_k_error(counts: np.ndarray, k: int) -> np.ndarray:
    """The share of images whose first hit rank is k or more; a file with fewer than k guesses keeps
    its error at its own last guess (ILSVRC: a missing guess is a miss)."""
    guesses = counts.shape[-1] - 1
    hits = counts[..., :min(k, guesses)].sum(axis=-1)
    return 1.0 - hits / np.maximum(counts.sum(axis=-1), 1)


def _top_k(k: int, board: bool = False) -> Metric:
    # Top-1 and top-5 are ILSVRC's; 2..4 are scored (and kept in the scores) but not shown.
    return Metric(f"top{k}_err", f"top-{k} err", f"top-{k} error", "classification", partial(top_k_error, k=k),
                  bootstrap=resample_rank_counts, column=board, board=board, listed=board)


# --- the registry ------------------------------------------------------------------------------------

METRICS: dict[str, Metric] = {m.name: m for m in (
    _top_k(1, board=True), _top_k(2), _top_k(3), _top_k(4), _top_k(5, board=True),
    Metric("map50", "mAP@0.5", "mAP@0.5", "detection", itemgetter("map50"), lower_is_better=False,
           column=True, board=True, listed=True),  # VOC's all-point AP at IoU 0.5
    Metric("map50_coco", "COCO mAP@0.5", "COCO mAP@0.5", "detection", itemgetter("map50_coco"),
           lower_is_better=False),  # COCO's 101-point AP at IoU 0.5
    Metric("map_coco", "mAP@[.5:.95]", "mAP@[.5:.95]", "detection", itemgetter("map_coco"), lower_is_better=False,
           column=True, board=True),
)}

# The metric a challenge of each task ranks by (Challenge.metric), and the first column of its board.
PRIMARY: dict[str, str] = {"classification": "top5_err", "detection": "map50"}


def task_metrics(task: str) -> list[Metric]:
    """The task's metrics in declaration order: the order of a submission's scores."""
    return [m for m in METRICS.values() if m.task == task]


def board_metrics(task: str) -> list[Metric]:
    """The columns of a task's board: the primary metric first, the task's other board metrics after it."""
    primary = METRICS[PRIMARY[task]]
    return [primary, *(m for m in task_metrics(task) if m.board and m is not primary)]


def column_metrics(task: str | None = None) -> list[str]:
    """The metrics with a `runs` column (of one task, or of all), in declaration order."""
    return [m.name for m in METRICS.values() if m.column and task in (None, m.task)]


def listed_metrics(column: bool = False) -> list[str]:
    """The metrics of the lists that mix tasks; `column`: only those the `runs` table holds."""
    return [m.name for m in METRICS.values() if m.listed and (m.column or not column)]


def lower_is_better(name: str) -> bool:
    """Whether lower is better; a name the registry does not know is taken as an error (lower is better)."""
    metric = METRICS.get(name)
    return metric is None or metric.lower_is_better
