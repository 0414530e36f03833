"""A campaign: a suite's jobs planned against the database, run on Ray, every result persisted."""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

import ray

from orchestrator import scheduler
from orchestrator.baselines import submit_baseline
from orchestrator.progress import ProgressTable
from orchestrator.store import Store, now
from orchestrator.suite import Suite
from workers.jobs import JobSpec

log = logging.getLogger("convbench.campaign")


@dataclass
class Plan:
    jobs: list[JobSpec]
    done: set[str] = field(default_factory=set)  # in the database already
    recovered: set[str] = field(default_factory=set)  # finished on disk, not yet in the database

    @property
    def to_run(self) -> list[JobSpec]:
        return [j for j in self.jobs if j.job_id not in self.done and j.job_id not in self.recovered]


def with_storage(suite: Suite, storage: str | None) -> list[JobSpec]:
    """The suite's jobs with an absolute storage root, so every node and the driver agree on it."""
    root = str(Path(storage or suite.storage).expanduser().resolve())
    return [replace(job, storage=root) for job in suite.jobs()]


def make_plan(store: Store, jobs: list[JobSpec]) -> Plan:
    done = store.finished(j.job_id for j in jobs)
    recovered = {j.job_id for j in jobs if j.job_id not in done and scheduler.saved_result(j) is not None}
    return Plan(jobs, done, recovered)


def run_campaign(suite: Suite, store: Store, storage: str | None = None, address: str | None = None,
                 num_cpus: int | None = None, out: TextIO = sys.stdout, refresh_s: float = 1.0) -> dict[str, str]:
    """Runs what is missing of the suite; returns each job's final state. Failed jobs do not stop the rest."""
    store.prepare()
    plan = make_plan(store, with_storage(suite, storage))
    states = {j.job_id: "done" for j in plan.jobs if j.job_id in plan.done}
    for job in plan.jobs:
        if job.job_id in plan.recovered:
            result = scheduler.saved_result(job)
            if store.record(job, result):
                submit_baseline(store.url, job, result)
            states[job.job_id] = "done"
    todo = plan.to_run
    print(f"suite {suite.name}: {len(plan.jobs)} jobs, {len(plan.done) + len(plan.recovered)} already done, "
          f"{len(todo)} to run", file=out, flush=True)
    if not todo:
        return states

    store.queue(todo)
    scheduler.connect(address, num_cpus)
    board = scheduler.ProgressBoard.remote()
    pending = {scheduler.submit(job, board): job for job in todo}
    table = ProgressTable(todo, out)
    running: set[str] = set()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=refresh_s, fetch_local=True)
        snapshot = ray.get(board.snapshot.remote())
        for job_id in snapshot.keys() - running:
            running.add(job_id)
            store.set_state(job_id, "running", started_at=now(), node=snapshot[job_id].get("node"))
        for ref in ready:
            job = pending.pop(ref)
            try:
                result = ray.get(ref)
            except (ray.exceptions.RayError, Exception) as exc:  # noqa: BLE001 - any job failure is recorded, not raised
                error = scheduler.describe_error(exc)
                store.set_state(job.job_id, "failed", error=error, finished_at=now())
                states[job.job_id] = "failed"
                table.finish(job.job_id, "failed", error=error)
                continue
            if store.record(job, result):
                submit_baseline(store.url, job, result)
            states[job.job_id] = "done"
            table.finish(job.job_id, "done", result=result)
        table.update(snapshot)
    table.close()
    return states
