"""The submission gate (issue #14): a 50,000-row top-5 file through HTTP end to end (multipart upload, uvicorn,
FastAPI, authentication, validation, scoring, quota, the board's rank, the JSON answer) against the same
submission scored in-process (leaderboard.quota.submit), in one process, interleaved; and 20 uploads at once.

The gate runs in a thread of this process (uvicorn on 127.0.0.1, a free port): the client's encoding and the
server's parsing share the same cores, as they would on a one-machine deployment.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

import numpy as np

from bench.environment import workload
from bench.harness import Figure, Settings, Target, compared, interleave, timed
from bench.scoring_speed import test_ids, top5_file

PACKAGES = ("fastapi", "uvicorn", "starlette", "sqlalchemy", "pyarrow")
HTTP, IN_PROCESS = "through the gate (HTTP)", "quota.submit in process"
CROWD = 20


def gate(url: str) -> AbstractContextManager[str]:
    from gate.in_thread import serving

    return serving(url)


def challenge(url: str, ids: np.ndarray, labels: np.ndarray, class_names: list[str]) -> str:
    """A 50,000-image challenge on a fresh database; returns an official team's token (no quota: repetitions)."""
    from db.engine import create_schema, session_scope
    from db.schema import Challenge
    from leaderboard.scoring import store_held_labels
    from leaderboard.tokens import create_team

    create_schema(url)
    with session_scope(url) as s:
        row = Challenge(slug="bench-gate", title="bench", task="classification", dataset="synthetic",
                        class_names=class_names, metric="top5_err")
        s.add(row)
        s.flush()
        store_held_labels(s, row.id, dict(zip(ids.tolist(), labels.tolist())), "classification")
        return create_team(s, "bench baselines", official=True)


def run(settings: Settings) -> list[Figure]:
    from leaderboard import gate_client
    from leaderboard.quota import submit

    rng = np.random.default_rng(0)
    n, num_classes = settings.pick(50_000, 10_000), 1000
    ids, labels = test_ids(n), rng.integers(num_classes, size=n)
    class_names = [f"class_{i:04d}" for i in range(num_classes)]
    data = top5_file(ids, num_classes, rng)
    path = settings.workdir / "gate-bench.db"
    path.unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    token = challenge(url, ids, labels, class_names)
    work = workload(PACKAGES, images=n, guesses=5, classes=num_classes, file_mb=round(len(data) / 2**20, 2),
                    database="sqlite", threads=settings.threads)
    with gate(url) as base:
        def http() -> float:
            return timed(lambda: gate_client.submit(base, token, "bench-gate", data, "predictions.csv"))

        def local() -> float:
            return timed(lambda: submit(url, token, "bench-gate", data, "predictions.csv"))

        samples = interleave({IN_PROCESS: local, HTTP: http}, settings.repeats, settings.warmup)

        def one() -> float:
            return timed(lambda: gate_client.submit(base, token, "bench-gate", data, "predictions.csv"))

        latencies: list[float] = []
        walls: list[float] = []
        for _ in range(settings.pick(2, 1)):
            start = time.perf_counter()
            with ThreadPoolExecutor(CROWD) as pool:
                latencies += list(pool.map(lambda _: one(), range(CROWD)))
            walls.append(time.perf_counter() - start)
    p99 = float(np.percentile(latencies, 99))
    crowd = {**work, "at_once": CROWD, "rounds": len(walls)}
    return [
        compared("gate", "top-5 submission through the HTTP gate, vs in-process quota.submit", work, "s", samples,
                 HTTP, IN_PROCESS, Target("<=", 3.0)),
        Figure("gate", f"{CROWD} submissions at once through the gate, p99 latency", crowd, "s", [p99],
               target=Target("<=", 5.0, on="value"),
               note=f"median {np.median(latencies):.2f} s, max {max(latencies):.2f} s; whole crowd "
                    f"{np.median(walls):.2f} s (validation 2 at a time)"),
    ]
