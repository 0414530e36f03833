"""Scoring: what the server spends on one upload, against pandas.read_csv of the same bytes.

Classification: a 50,000-image top-5 file over 1,000 classes (ILSVRC's size), validated by
leaderboard.submissions.validate and scored by leaderboard.scoring.classification_scores (top-1..5
with 1,000-resample bootstrap CIs) on in-memory arrays; and the whole leaderboard.quota.submit into
a temp SQLite (read of held labels cached after the first upload, as on a running server).
Detection: 5,000 images x 20 detections, validated, then mAP by leaderboard.scoring.detection_scores
(COCO matching by faster-coco-eval, via workers.detection.map_metrics), when that module is importable.
Uploads (issue #12): worst cases near the 50 MB cap (a first row of 80,000 extra fields, 40 MB of
',\n', a 38 MB detection CSV, a 47 MB COCO JSON, three of them at once), each validated in a fresh
process: seconds, and its peak extra memory as a multiple of the file's size.
"""
from __future__ import annotations

import io
import json
import multiprocessing
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
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
        import workers.detection.map_metrics  # noqa: F401 - the scorer imports it lazily; fail here, not mid-benchmark
        from leaderboard.scoring import detection_scores
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


# --- uploads: worst cases, each in a fresh process (issue #12) --------------------------------

UPLOAD_SECONDS, UPLOAD_TIMES_SIZE, CONCURRENT_MB = 2.0, 8.0, 1200  # the targets
WIDE, COMMAS, DET_CSV, COCO_JSON = ("wide first row (80,000 extra fields)", "',\\n' repeated (40 MB at full size)",
                                    "valid detection CSV", "valid COCO JSON")


def _peak_bytes() -> int:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the
    parent that forked the child, so a child's own small peak would hide under the parent's."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


def _upload_child(jobs: list[tuple[str, str]], n_ids: int, repeats: int, baseline: str | None) -> dict[str, Any]:
    """In a fresh process: validate the files (task, path) at once, one thread each; the peak memory
    that added beyond the files' bytes, then `repeats` timings of the first alone and of its baseline."""
    from leaderboard.errors import LeaderboardError
    from leaderboard.submissions import validate

    ids = test_ids(n_ids)
    ids.setflags(write=False)  # as the server's cached ids
    names = [f"class_{c}" for c in range(1, 21)]
    for task in ("classification", "detection"):  # lazy imports and kernels, outside the measurement
        validate(task, b"image_id,class_id,score,x1,y1,x2,y2\ntest_000000,1,1,1,1,2,2\n"
                 if task == "detection" else b"image_id,pred_1\ntest_000000,1\n", "w.csv", ids[:1], names[:2])
    files = [Path(path).read_bytes() for _, path in jobs]
    outcomes: list[str] = []

    def one(task: str, path: str, data: bytes) -> None:
        try:
            outcomes.append(f"accepted, {validate(task, data, path, ids, names).n_rows:,} rows")
        except LeaderboardError as exc:
            outcomes.append(str(exc)[:100])

    before = _peak_bytes()
    threads = [threading.Thread(target=one, args=(task, path, data)) for (task, path), data in zip(jobs, files)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds, extra = time.perf_counter() - start, _peak_bytes() - before
    (task, path), data = jobs[0], files[0]
    read = {"pandas.read_csv": lambda: pd.read_csv(io.BytesIO(data)), "json.loads": lambda: json.loads(data)}
    paths = {"validate": lambda: timed(lambda: one(task, path, data))}
    if baseline:
        paths[baseline] = lambda: timed(read[baseline])
    samples = interleave(paths, repeats, warmup=0) if repeats else {}
    return {"extra": extra, "seconds": seconds, "outcomes": outcomes, "samples": samples}


def _in_fresh_process(*args: Any) -> dict[str, Any]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_upload_child, *args).result()


def upload_files(folder: Path, scale: float, n_ids: int) -> dict[str, tuple[str, Path, str | None]]:
    """The worst cases, `scale` of their full size: name -> (task, path, baseline to time against)."""
    rng = np.random.default_rng(2)
    ids = test_ids(n_ids)
    rows = [f"{i},1,2,3,4,5" for i in ids]
    rows[0] += ",0" * 80_000  # 160 KB of extra fields on the first data row (any scale: it is the case)
    header = "image_id," + ",".join(f"pred_{j}" for j in range(1, 6))
    made = {WIDE: ("classification", "\n".join([header, *rows]).encode() + b"\n", None),
            COMMAS: ("classification", b"image_id,pred_1\n" + b",\n" * int(20e6 * scale), None)}
    n = int(900_000 * scale)
    image, classes, xy, wh = rng.integers(0, n_ids, n), rng.integers(1, 21, n), rng.uniform(0, 400, (n, 2)), \
        rng.uniform(1, 100, (n, 2))
    scores = rng.uniform(size=n).round(4)
    frame = pd.DataFrame({"image_id": ids[image], "class_id": classes, "score": scores, "x1": xy[:, 0].round(1),
                          "y1": xy[:, 1].round(1), "x2": (xy + wh)[:, 0].round(1), "y2": (xy + wh)[:, 1].round(1)})
    made[DET_CSV] = ("detection", frame.to_csv(index=False).encode(), "pandas.read_csv")
    m = int(470_000 * scale)
    coco = pd.DataFrame({"image_id": frame.image_id[:m], "category_id": frame.class_id[:m],
                         "bbox": (np.column_stack([xy[:m], wh[:m]]).round(1)).tolist(), "score": frame.score[:m]})
    made[COCO_JSON] = ("detection", coco.to_json(orient="records").encode(), "json.loads")
    cases = {}
    for k, (name, (task, data, baseline)) in enumerate(made.items()):
        path = folder / f"upload_{k}.{'json' if baseline == 'json.loads' else 'csv'}"
        path.write_bytes(data)
        cases[name] = (task, path, baseline)
    return cases


def uploads(settings: Settings) -> list[Figure]:
    scale, n_ids = settings.pick(1.0, 0.25), 50_000  # quick: 10 MB files; below that a fixed ~25 MB dominates
    cases = upload_files(settings.workdir, scale, n_ids)
    figures = []
    for name, (task, path, baseline) in cases.items():
        size = path.stat().st_size
        work = workload(PACKAGES, case=name, file_mb=round(size / 2**20, 1), test_ids=n_ids)
        result = _in_fresh_process([(task, str(path))], n_ids, settings.repeats, baseline)
        print(f"[bench] scoring: upload {name}: {result['outcomes'][0]}", flush=True)
        samples = result["samples"]
        if baseline:
            figures.append(compared("scoring", f"upload {name}: seconds", work, "s", samples, "validate", baseline,
                                    Target("<=", UPLOAD_SECONDS, on="value"), note=result["outcomes"][0]))
        else:
            figures.append(Figure("scoring", f"upload {name}: seconds", work, "s", samples["validate"],
                                  target=Target("<=", UPLOAD_SECONDS, on="value"), note=result["outcomes"][0]))
        figures.append(Figure("scoring", f"upload {name}: peak extra memory / file size", work, "x", [
            result["extra"] / size], target=Target("<=", UPLOAD_TIMES_SIZE, on="value"),
            note=f"{result['extra'] / 2**20:.0f} MB in a fresh process"))
    heavy = [COCO_JSON, DET_CSV, COMMAS]
    jobs = [(cases[name][0], str(cases[name][1])) for name in heavy]
    total = sum(cases[name][1].stat().st_size for name in heavy)
    result = _in_fresh_process(jobs, n_ids, 0, None)
    work = workload(PACKAGES, cases=" + ".join(heavy), files_mb=round(total / 2**20, 1), test_ids=n_ids)
    figures.append(Figure("scoring", "3 uploads at once: peak extra memory", work, "MB", [
        (result["extra"] + total) / 2**20], target=Target("<=", CONCURRENT_MB * scale, on="value"),
        note=f"the uploads' bytes included; {result['seconds']:.1f} s for all three, validated 2 at a time"))
    return figures


def run(settings: Settings) -> list[Figure]:
    return classification(settings) + detection(settings) + uploads(settings)
