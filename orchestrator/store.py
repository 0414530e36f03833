"""Writing job state and results to the database, exactly once, and never losing one.

A result is written with `UPDATE ... WHERE state != 'done'`, so a retried task or a second
driver cannot write it twice. When the database cannot be reached the result is retried,
then spooled as JSON under the storage folder and written by the next run.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from db.engine import create_schema, session_scope
from db.schema import Run
from workers.jobs import JobSpec
from workers.zoo import ARCHS

log = logging.getLogger("convbench.store")
T = TypeVar("T")

RESULT_COLUMNS = ("top1_err", "top5_err", "map50", "map_coco", "metrics", "history", "epochs_done", "params", "flops",
                  "input_size", "train_ips", "eval_ips", "wall_s", "peak_mem_mb", "hardware", "node", "versions",
                  "git_commit", "checkpoint", "log_path", "launcher")
RETRIES = (0.5, 2.0, 5.0)  # seconds between attempts before a result goes to the spool


def now() -> datetime:
    return datetime.now(timezone.utc)


def new_run(spec: JobSpec) -> Run:
    return Run(job_id=spec.job_id, suite=spec.suite, task=spec.task, arch=spec.arch,
               family=ARCHS[spec.arch].family if spec.arch in ARCHS else "detector", dataset=spec.dataset,
               seed=spec.seed, state="queued", config=spec.to_dict(), input_size=spec.input_size)


class Store:
    def __init__(self, url: str, spool: Path, retries: tuple[float, ...] = RETRIES):
        self.url, self.spool, self.retries = url, Path(spool), retries

    def _retry(self, fn: Callable[[], T]) -> T:
        for delay in (*self.retries, None):
            try:
                return fn()
            except DBAPIError as exc:
                # Only a lost or refused connection is worth waiting for; a bad statement is a bug.
                if delay is None or not (isinstance(exc, OperationalError) or exc.connection_invalidated):
                    raise
                log.warning("database unreachable (%s); retrying in %.1fs", exc.__class__.__name__, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def prepare(self) -> None:
        self._retry(lambda: create_schema(self.url))
        self.flush_spool()

    def finished(self, job_ids: Iterable[str]) -> set[str]:
        ids = list(job_ids)

        def query() -> set[str]:
            with session_scope(self.url) as s:
                rows = s.scalars(select(Run.job_id).where(Run.job_id.in_(ids), Run.state == "done"))
                return set(rows)

        return self._retry(query) if ids else set()

    def queue(self, specs: Iterable[JobSpec]) -> None:
        """Creates a row per job (or resets a failed/stale one to queued), leaving done rows alone."""
        def write() -> None:
            with session_scope(self.url) as s:
                for spec in specs:
                    run = s.get(Run, spec.job_id)
                    if run is None:
                        s.add(new_run(spec))
                    elif run.state != "done":
                        run.state, run.error, run.suite = "queued", None, spec.suite

        self._retry(write)

    def set_state(self, job_id: str, state: str, **fields: Any) -> None:
        def write() -> None:
            with session_scope(self.url) as s:
                s.execute(update(Run).where(Run.job_id == job_id, Run.state != "done").values(state=state, **fields))

        try:
            self._retry(write)
        except DBAPIError:
            log.warning("could not record state %s of %s; the result will still be kept", state, job_id)

    def record(self, spec: JobSpec, result: dict[str, Any]) -> bool:
        """Writes a finished job's result once; spools it to disk if the database stays away."""
        values = {k: result.get(k) for k in RESULT_COLUMNS if k in result}
        values.update(state="done", error=None, finished_at=now())

        def write() -> bool:
            with session_scope(self.url) as s:
                if s.get(Run, spec.job_id) is None:
                    s.add(new_run(spec))
                    s.flush()
                done = s.execute(update(Run).where(Run.job_id == spec.job_id, Run.state != "done").values(**values))
                return done.rowcount == 1

        try:
            return self._retry(write)
        except DBAPIError as exc:
            self.spool_result(spec, result)
            log.error("database unreachable; result of %s kept in %s (%s)", spec.job_id, self.spool, exc.__class__.__name__)
            return False

    def spool_result(self, spec: JobSpec, result: dict[str, Any]) -> Path:
        self.spool.mkdir(parents=True, exist_ok=True)
        path = self.spool / f"{spec.job_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"spec": spec.to_dict(), "result": result}, default=str))
        tmp.replace(path)
        return path

    def flush_spool(self) -> int:
        """Writes results that an earlier run could not; returns how many it wrote."""
        written = 0
        for path in sorted(self.spool.glob("*.json")) if self.spool.is_dir() else []:
            entry = json.loads(path.read_text())
            spec = JobSpec.from_dict(entry["spec"])
            self.record(spec, entry["result"])  # re-spools (same file) if the database is still away
            if self.finished([spec.job_id]):
                path.unlink()
                written += 1
        return written
