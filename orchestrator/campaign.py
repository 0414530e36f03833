"""A campaign: a suite's jobs planned against the database, run on Ray, every result persisted."""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import ray
from sqlalchemy.exc import DBAPIError

from orchestrator import scheduler
from orchestrator.baselines import submit_baseline
from orchestrator.kits import with_kits
from orchestrator.progress import ProgressTable
from orchestrator.store import Store, Written, now, parse_time
from orchestrator.suite import Suite
from workers.jobs import JobSpec

log = logging.getLogger("convbench.campaign")
CATCH_UP_S = 5.0  # while the database is away, how often the loop tries to write what it missed


@dataclass
class Plan:
    jobs: list[JobSpec]
    done: set[str] = field(default_factory=set)  # in the database already
    recovered: set[str] = field(default_factory=set)  # finished on disk, not yet in the database

    @property
    def to_run(self) -> list[JobSpec]:
        return [j for j in self.jobs if j.job_id not in self.done and j.job_id not in self.recovered]


def storage_root(suite: Suite, storage: str | None) -> Path:
    """The absolute storage root, so every node and the driver agree on it."""
    return Path(storage or suite.storage).expanduser().resolve()


def with_storage(suite: Suite, storage: str | None) -> list[JobSpec]:
    root = str(storage_root(suite, storage))
    return [replace(job, storage=root) for job in suite.jobs()]


def make_plan(store: Store, jobs: list[JobSpec]) -> Plan:
    done = store.finished(j.job_id for j in jobs)
    recovered = {j.job_id for j in jobs if j.job_id not in done and scheduler.saved_result(j) is not None}
    return Plan(jobs, done, recovered)


def submit_baselines(store: Store, written: Written, root: Path) -> None:
    """Submits the predictions of results just written, from the job folders under the driver's own `root`."""
    for spec, _ in written:
        submit_baseline(store.url, spec, root)


def record_done(store: Store, root: Path, job: JobSpec, result: dict[str, Any]) -> None:
    if store.record(job, result, scheduler.read_job_log(root, job)):
        submit_baseline(store.url, job, root)


def note_starts(store: Store, snapshot: dict[str, dict[str, Any]], seen: dict[str, int], states: dict[str, str]) -> None:
    """Records each job's start, and each further start (a retry, a restart) as its attempt count."""
    for job_id, report in snapshot.items():
        attempt = report.get("attempt") or 1
        if job_id in states or seen.get(job_id, 0) >= attempt:
            continue  # finished, or this start is recorded already
        fields: dict[str, Any] = {"attempts": attempt, "node": report.get("node")}
        if job_id not in seen:  # the worker's clock: a state kept through an outage is written later
            fields["started_at"] = parse_time(report.get("started_at")) or now()
        seen[job_id] = attempt
        store.set_state(job_id, "running", **fields)


def run_campaign(suite: Suite, store: Store, storage: str | None = None, address: str | None = None,
                 num_cpus: int | None = None, out: TextIO = sys.stdout, refresh_s: float = 1.0) -> dict[str, str]:
    """Runs what is missing of the suite; returns each job's final state. Failed jobs do not stop the rest."""
    root = storage_root(suite, storage)
    submit_baselines(store, store.prepare(), root)
    plan = make_plan(store, with_storage(suite, storage))
    states = {j.job_id: "done" for j in plan.jobs if j.job_id in plan.done}
    for job in plan.jobs:
        if job.job_id in plan.recovered:
            record_done(store, root, job, scheduler.saved_result(job))
            states[job.job_id] = "done"
    todo = plan.to_run
    print(f"suite {suite.name}: {len(plan.jobs)} jobs, {len(plan.done) + len(plan.recovered)} already done, "
          f"{len(todo)} to run", file=out, flush=True)
    if todo:
        todo = with_kits(store.url, root, todo)  # issue #14: predictions on each challenge's participant kit
        run_jobs(store, root, todo, states, address, num_cpus, out, refresh_s)
    settle(store, out, root)
    return states


def run_jobs(store: Store, root: Path, todo: list[JobSpec], states: dict[str, str], address: str | None,
             num_cpus: int | None, out: TextIO, refresh_s: float) -> None:
    store.queue(todo)
    ray_log = scheduler.route_ray_output(root)  # Ray's own lines would tear the table
    print(f"Ray's own messages go to {ray_log}", file=out, flush=True)
    scheduler.connect(address, num_cpus)
    board = scheduler.ProgressBoard.remote()
    pending = {scheduler.submit(job, board): job for job in todo}
    table = ProgressTable(todo, out)
    seen: dict[str, int] = {}
    last_catch_up = time.monotonic()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=refresh_s, fetch_local=True)
        snapshot = ray.get(board.snapshot.remote())
        note_starts(store, snapshot, seen, states)
        for ref in ready:
            job = pending.pop(ref)
            try:
                result = ray.get(ref)
            except (ray.exceptions.RayError, Exception) as exc:  # noqa: BLE001 - any job failure is recorded, not raised
                error = scheduler.describe_error(exc)
                store.set_state(job.job_id, "failed", error=error, finished_at=now(),
                                log_text=scheduler.read_job_log(root, job))
                states[job.job_id] = "failed"
                table.finish(job.job_id, "failed", error=error)
                continue
            record_done(store, root, job, result)
            states[job.job_id] = "done"
            table.finish(job.job_id, "done", result=result)
        if store.behind and time.monotonic() - last_catch_up > CATCH_UP_S:
            submit_baselines(store, store.catch_up(), root)
            last_catch_up = time.monotonic()
        table.update(snapshot)
    table.close()


def settle(store: Store, out: TextIO, root: Path | None = None) -> None:
    """Before the driver exits: writes what an outage held back, waiting out the retries once; says what is left,
    and which jobs' rows may still read `running` (or `queued`) until the next run puts them right.

    `root`: the storage root, where the baselines' prediction files are (default: the folder the spool is in).
    """
    if not store.behind:
        return
    submit_baselines(store, store.catch_up(store.retries), root or store.spool.parent)
    spooled, unsaved = store.spooled(), dict(store.unsaved)
    if not (spooled or unsaved):
        return
    print(f"the database is unreachable: {len(spooled)} results are kept in {store.spool} and {len(unsaved)} job "
          f"states are not recorded; the next run writes the results", file=out, flush=True)
    stale = {path.stem: "done, its result kept in the spool" for path in spooled}
    for job_id, fields in unsaved.items():
        stale.setdefault(job_id, f"{fields.get('state')}, not recorded")
    print("until then these jobs' rows may still read `running` (or `queued`); the next run of the suite writes "
          "the kept results and runs the others again:", file=out)
    for job_id, what in sorted(stale.items()):
        print(f"  {job_id}  ({what})", file=out)
    out.flush()


def print_board(store: Store, suite: str, out: TextIO = sys.stdout) -> bool:
    """Prints the suite's finished runs, best first; when the database is away, says so in one line instead."""
    from leaderboard.queries import format_runs, runs_frame

    try:
        board = format_runs(runs_frame(store.url, suite=suite, limit=None))
    except DBAPIError as exc:
        reason = exc.orig.__class__.__name__ if exc.orig is not None else exc.__class__.__name__
        kept = len(store.spooled())
        print(f"\ncould not print the leaderboard: the database is unreachable ({reason})"
              + (f"; {kept} results are kept in {store.spool} for the next run" if kept else ""), file=out, flush=True)
        return False
    print(f"\n{board}", file=out, flush=True)
    return True
