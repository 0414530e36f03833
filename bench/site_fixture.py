"""A populated leaderboard database: N runs, M submissions over three challenges and a thousand teams.

Rows are shaped like the orchestrator's and the scorer's (histories, metrics and score dicts with
CIs, provenance), so the queries and pages meet realistic JSON sizes. Nothing here is read back
for correctness; it only has to be representative.
"""
from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from workers.zoo import ARCHS

CHALLENGES = (  # slug, task, dataset, metric, classes, share of the submissions
    ("imagenet-top5", "classification", "imagenet", "top5_err", 1000, 0.6),
    ("synthetic-10", "classification", "synthetic", "top5_err", 10, 0.3),
    ("scenes-det", "detection", "synthetic-scenes", "map50", 4, 0.1),
)
TEAMS = 1000
OFFICIAL = "convbench baselines"
START = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 5000


@dataclass(frozen=True)
class SiteFixture:
    url: str
    runs: int
    submissions: int
    main_slug: str  # the challenge with the most submissions: the board page's default
    main_task: str
    run_id: str  # a finished classification run with a submission: the run page's subject
    team: str  # the team with the most submissions: the submit page's history
    curve_runs: list[str]  # the runs whose learning curves the architectures page draws by default


def _when(rng: np.random.Generator, n: int) -> list[datetime]:
    return [START + timedelta(seconds=float(s)) for s in rng.uniform(0, 365 * 86400, n)]


def _ci(value: float) -> list[float]:
    return [round(max(0.0, value - 0.004), 5), round(min(1.0, value + 0.004), 5)]


def run_rows(n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    archs = list(ARCHS)
    states = rng.choice(["done", "failed", "running", "queued"], size=n, p=[0.85, 0.05, 0.05, 0.05])
    created = _when(rng, n)
    rows = []
    for i in range(n):
        arch = archs[i % len(archs)]
        detection = i % 10 == 9
        done = states[i] == "done"
        top1, top5 = float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.05, 0.4))
        map50 = float(rng.uniform(0.1, 0.7))
        history = [{"epoch": e + 1, "train_loss": float(rng.uniform(0.5, 3)), "train_top1_err": top1 + 0.1,
                    "images_per_s": 120.0, "lr": 0.1 / (e + 1), "val_top1_err": top1 + 0.05 * (4 - e),
                    "val_top5_err": top5 + 0.03 * (4 - e)} for e in range(5)] if done else []
        metrics = ({"map50": map50, "ap50": {f"class_{c}": map50 for c in range(4)},
                    "proposals": {"selective_search": {"recall@0.5": 0.9, "per_image": 400.0}}}
                   if detection else {f"top{k}_err": top1 if k == 1 else top5 for k in range(1, 6)})
        rows.append({
            "job_id": hashlib.sha256(f"run-{i}".encode()).hexdigest()[:20], "suite": f"suite-{i % 20}",
            "task": "detection" if detection else "classification", "arch": arch, "family": ARCHS[arch].family,
            "dataset": "synthetic-scenes" if detection else ("imagenet" if i % 2 else "synthetic"), "seed": i // 200,
            "state": str(states[i]), "error": "RuntimeError: worker died" if states[i] == "failed" else None,
            "attempts": 1, "epochs_done": len(history),
            "top1_err": top1 if done and not detection else None, "top5_err": top5 if done and not detection else None,
            "map50": map50 if done and detection else None, "map_coco": map50 / 2 if done and detection else None,
            "metrics": metrics if done else {}, "history": history, "params": 11_689_512, "flops": 3.6e9,
            "input_size": 224, "train_ips": 120.0, "eval_ips": 400.0, "wall_s": float(rng.uniform(60, 3600)),
            "peak_mem_mb": 2048.0, "config": {"arch": arch, "recipe": {"epochs": 5, "batch_size": 64}},
            "git_commit": "0" * 40, "versions": {"torch": "2.14.1", "ray": "2.60.0"},
            "hardware": "NVIDIA H200 x1", "node": "node-1", "launcher": "task", "checkpoint": "/runs/x/epoch_0005.pt",
            "log_path": "/runs/x/log.txt", "created_at": created[i],
            "started_at": created[i] + timedelta(seconds=5) if states[i] != "queued" else None,
            "finished_at": created[i] + timedelta(hours=1) if done else None,
        })
    return rows


def score_dict(task: str, rng: np.random.Generator) -> tuple[float, dict[str, Any]]:
    if task == "detection":
        map50 = float(rng.uniform(0.1, 0.7))
        return 1 - map50, {"metric": "map50", "map50": map50, "map50_ci": _ci(map50), "map_coco": map50 / 2,
                           "map50_coco": map50, "ap50_per_class": {f"class_{c}": map50 for c in range(4)},
                           "n_images": 5000, "n_detections": 100_000}
    errors = np.sort(rng.uniform(0.05, 0.8, 5))[::-1]
    scores: dict[str, Any] = {"metric": "top5_err", "n_images": 50_000, "guesses": 5}
    for k in range(5):
        scores[f"top{k + 1}_err"] = float(errors[k])
        scores[f"top{k + 1}_err_ci"] = _ci(float(errors[k]))
    scores["ci"] = {"level": 0.95, "resamples": 1000, "seed": 0, "method": "percentile bootstrap over test images"}
    return float(errors[4]), scores


def populate(url: str, runs: int, submissions: int, seed: int = 0) -> SiteFixture:
    """Migrates the (empty) database at `url` and fills it."""
    from sqlalchemy import insert

    from db.engine import create_schema, make_engine
    from db.schema import Challenge, Run, Submission, Team

    create_schema(url)
    rng = np.random.default_rng(seed)
    run_list = run_rows(runs, rng)
    engine = make_engine(url)
    with engine.begin() as conn:
        for start in range(0, runs, CHUNK):
            conn.execute(insert(Run.__table__), run_list[start:start + CHUNK])
        for slug, task, dataset, metric, classes, _ in CHALLENGES:
            conn.execute(insert(Challenge.__table__), [{
                "slug": slug, "title": slug, "task": task, "dataset": dataset, "dataset_config": {},
                "class_names": [f"class_{c}" for c in range(classes)], "metric": metric, "quota": 2,
                "window_days": 7.0, "created_at": START}])
        names = [OFFICIAL] + [f"team-{t:04d}" for t in range(1, TEAMS)]
        conn.execute(insert(Team.__table__), [{"name": n, "token_hash": hashlib.sha256(n.encode()).hexdigest(),
                                               "official": n == OFFICIAL, "revoked": False, "created_at": START}
                                              for n in names])
        challenge_ids = {slug: i + 1 for i, (slug, *_rest) in enumerate(CHALLENGES)}
        team_ids = {n: i + 1 for i, n in enumerate(names)}
        rows = _submission_rows(run_list, submissions, challenge_ids, team_ids, rng)
        for start in range(0, len(rows), CHUNK):
            conn.execute(insert(Submission.__table__), rows[start:start + CHUNK])
    if engine.dialect.name == "postgresql":
        # What autovacuum has done on a live server: planner statistics, and the visibility map that lets
        # index-only scans skip the table. Right after a bulk load neither exists yet.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    counts = np.bincount([r["team_id"] for r in rows if r["team_id"] != team_ids[OFFICIAL]], minlength=TEAMS)
    done = [r["job_id"] for r in run_list if r["state"] == "done" and r["task"] == "classification"]
    return SiteFixture(url, runs, len(rows), CHALLENGES[0][0], CHALLENGES[0][1], done[0],
                       names[int(np.argmax(counts))], done[:3])


def _submission_rows(run_list: list[dict[str, Any]], n: int, challenge_ids: dict[str, int],
                     team_ids: dict[str, int], rng: np.random.Generator) -> list[dict[str, Any]]:
    """Official baselines for most finished classification runs on the main challenge, then teams' uploads."""
    main, task = CHALLENGES[0][0], CHALLENGES[0][1]
    done = [r for r in run_list if r["state"] == "done" and r["task"] == "classification"]
    official = done[: min(len(done), n // 12)]
    rows = []
    for r in official:
        primary, scores = score_dict(task, rng)
        rows.append({"team_id": team_ids[OFFICIAL], "challenge_id": challenge_ids[main], "run_id": r["job_id"],
                     "label": r["arch"], "primary_score": primary, "scores": scores, "created_at": r["finished_at"]})
    shares = np.array([c[5] for c in CHALLENGES])
    picks = rng.choice(len(CHALLENGES), size=n - len(rows), p=shares / shares.sum())
    teams = rng.integers(2, len(team_ids) + 1, size=len(picks))
    for pick, team, when in zip(picks, teams, _when(rng, len(picks))):
        slug, task = CHALLENGES[pick][0], CHALLENGES[pick][1]
        primary, scores = score_dict(task, rng)
        rows.append({"team_id": int(team), "challenge_id": challenge_ids[slug], "run_id": None, "label": "",
                     "primary_score": primary, "scores": scores, "created_at": when})
    for i, row in enumerate(rows):
        row.update(file_sha256=f"{i:064x}", file_data=None, n_rows=50_000)
    return rows


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh database on the server at `admin_url`, dropped on the way out."""
    import sqlalchemy as sa

    from db.engine import cached_engine

    name = f"convbench_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        cached_engine.cache_clear()  # its pooled connections go with DROP ... WITH (FORCE)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

