"""Scoring: what the server spends on one upload, against pandas.read_csv of the same bytes.

Classification: a 50,000-image top-5 file over 1,000 classes (ILSVRC's size), validated by
leaderboard.submissions.validate and scored by leaderboard.scoring.classification_scores (top-1..5
with 1,000-resample bootstrap CIs) on in-memory arrays; and the whole leaderboard.quota.submit into
a temp SQLite (read of held labels cached after the first upload, as on a running server).
Detection: 5,000 images x 20 detections, validated, then mAP by leaderboard.scoring.detection_scores
(COCO matching by faster-coco-eval, via workers.detection.metrics), when that module is importable.
"""
from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from bench.environment import workload
from bench.harness import Figure, Settings, Target, compared, interleave, timed
from leaderboard.submissions import validate

PACKAGES = ("pandas", "pyarrow", "numpy", "sqlalchemy")
READ_CSV, VALIDATE_SCORE, SUBMIT = "pandas.read_csv", "validate + score", "submit (SQLite)"
DET_VALIDATE, DET_SCORE = "validate detections", "detection mAP"


def test_ids(n: int) -> np.ndarray:
    return np.array([f"test_{i:06d}" for i in range(n)])


def top5_file(ids: np.ndarray, num_classes: int, rng: np.random.Generator) -> bytes:
    """A top-5 CSV in shuffled row order; five distinct guesses per row (a random start, a random odd stride)."""
    start = rng.integers(num_classes, size=len(ids))
    stride = 2 * rng.integers(1, num_classes // 8, size=len(ids)) + 1
    guesses = (start[:, None] + stride[:, None] * np.arange(5)) % num_classes
    order = rng.permutation(len(ids))
    frame = pd.DataFrame({"image_id": ids[order], **{f"pred_{j + 1}": guesses[order, j] for j in range(5)}})
    return frame.to_csv(index=False).encode()


def read_csv(data: bytes) -> Callable[[], Any]:
    return lambda: pd.read_csv(io.BytesIO(data))


def submit_path(settings: Settings, ids: np.ndarray, labels: np.ndarray, class_names: list[str],
                data: bytes) -> Callable[[], Any]:
    """The full upload path on a temp SQLite: validate, score, quota check and insert (an official team)."""
    from sqlalchemy import select

    from db.engine import create_schema, session_scope
    from db.schema import Challenge, Team
    from leaderboard.quota import submit
    from leaderboard.scoring import store_held_labels
    from leaderboard.tokens import create_team

    url = f"sqlite:///{settings.workdir / 'scoring.db'}"
    create_schema(url)
    with session_scope(url) as s:
        challenge = Challenge(slug="bench-top5", title="bench", task="classification", dataset="synthetic",
                              class_names=class_names, metric="top5_err")
        s.add(challenge)
        s.flush()
        store_held_labels(s, challenge.id, dict(zip(ids.tolist(), labels.tolist())), "classification")
        create_team(s, "bench baselines", official=True)  # official: the quota does not stop the repetitions
        team = s.scalars(select(Team).where(Team.name == "bench baselines")).one()
    return lambda: submit(url, team, "bench-top5", data, "predictions.csv")


def classification(settings: Settings) -> list[Figure]:
    from leaderboard.scoring import classification_scores

    rng = np.random.default_rng(0)
    n, num_classes = settings.pick(50_000, 10_000), 1000
    ids, labels = test_ids(n), rng.integers(num_classes, size=n)
    ids.setflags(write=False)  # as the server's cached ids (scoring.public_image_ids): validation keeps their Arrow copy
    class_names = [f"class_{i:04d}" for i in range(num_classes)]
    data = top5_file(ids, num_classes, rng)

    def validate_and_score() -> None:
        parsed = validate("classification", data, "predictions.csv", ids, class_names)
        classification_scores(parsed.guesses, labels)

    submit = submit_path(settings, ids, labels, class_names, data)
    first_submit = timed(submit)  # reads and caches the 50,000 held labels
    samples = interleave({READ_CSV: lambda: timed(read_csv(data)), VALIDATE_SCORE: lambda: timed(validate_and_score),
                          SUBMIT: lambda: timed(submit)}, settings.repeats, settings.warmup)
    work = workload(PACKAGES, images=n, guesses=5, classes=num_classes, file_mb=round(len(data) / 2**20, 2),
                    bootstrap=1000, threads=settings.threads)
    return [
        compared("scoring", "top-5 validate + score, vs read_csv", work, "s", samples, VALIDATE_SCORE, READ_CSV,
                 Target("<=", 3.0)),
        compared("scoring", "top-5 validate + score, absolute", work, "s", samples, VALIDATE_SCORE, READ_CSV,
                 Target("<=", 0.5, on="value")),
        compared("scoring", "top-5 full submit on SQLite (labels cached)", work, "s", samples, SUBMIT, READ_CSV,
                 note="quota check, sha256 and the insert of the file under the lock included"),
        Figure("scoring", "top-5 first submit on SQLite (reads held labels)", work, "s", [first_submit]),
    ]


def detection_file(ids: np.ndarray, num_classes: int, per_image: int, rng: np.random.Generator
                   ) -> tuple[bytes, list[list[list[float]]]]:
    """Ground truth (1-4 boxes per 500 x 375 image) and a CSV of `per_image` detections per image, half near a box."""
    truth, rows = [], []
    for image_id in ids:
        k = int(rng.integers(1, 5))
        xy = rng.uniform([0, 0], [400, 275], size=(k, 2))
        wh = rng.uniform(20, 100, size=(k, 2))
        classes = rng.integers(1, num_classes + 1, size=k)
        boxes = np.column_stack([xy, xy + wh])
        truth.append([[*map(float, b), int(c), 0] for b, c in zip(boxes, classes)])
        near = rng.integers(k, size=per_image // 2)
        jitter = boxes[near] + rng.normal(0, 8, size=(len(near), 4))
        xy_r = rng.uniform([0, 0], [400, 275], size=(per_image - len(near), 2))
        random = np.column_stack([xy_r, xy_r + rng.uniform(20, 100, size=(len(xy_r), 2))])
        found = np.concatenate([jitter, random])
        found[:, 2:] = np.maximum(found[:, 2:], found[:, :2] + 1)
        labels = np.concatenate([classes[near], rng.integers(1, num_classes + 1, size=len(xy_r))])
        scores = rng.uniform(size=per_image)
        rows += [(image_id, int(c), round(float(s), 4), *np.round(b, 1)) for b, c, s in zip(found, labels, scores)]
    frame = pd.DataFrame(rows, columns=["image_id", "class_id", "score", "x1", "y1", "x2", "y2"])
    return frame.to_csv(index=False).encode(), truth


def detection(settings: Settings) -> list[Figure]:
    n, per_image, num_classes = settings.pick(5000, 1000), 20, 20
    work = workload(PACKAGES + ("faster-coco-eval",), images=n, detections_per_image=per_image, classes=num_classes,
                    threads=settings.threads)
    try:
        from leaderboard.scoring import detection_scores
        import workers.detection.metrics  # noqa: F401 - the scorer imports it lazily; fail here, not mid-benchmark
    except ImportError as exc:
        print(f"[bench] scoring: detection part skipped: {exc}", flush=True)
        return [Figure("scoring", "detection mAP", work, "s", [], note=f"skipped: {exc}")]
    rng = np.random.default_rng(1)
    ids = test_ids(n)
    data, truth = detection_file(ids, num_classes, per_image, rng)
    class_names = [f"class_{c}" for c in range(1, num_classes + 1)]
    parsed = validate("detection", data, "predictions.csv", ids, class_names)
    samples = interleave({READ_CSV: lambda: timed(read_csv(data)),
                          DET_VALIDATE: lambda: timed(lambda: validate("detection", data, "p.csv", ids, class_names)),
                          DET_SCORE: lambda: timed(lambda: detection_scores(parsed, ids, truth, class_names))},
                         settings.repeats, settings.warmup)
    return [compared("scoring", "detection mAP (VOC + COCO, faster-coco-eval)", work, "s", samples, DET_SCORE, READ_CSV,
                     Target("<=", 3.0, on="value")),
            compared("scoring", "detection validate", work, "s", samples, DET_VALIDATE, READ_CSV)]


def run(settings: Settings) -> list[Figure]:
    return classification(settings) + detection(settings)
