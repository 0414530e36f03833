"""Writing job state and results to the database, exactly once, and never losing one.

A result is written with `UPDATE ... WHERE state != 'done'`, so a retried task or a second
driver cannot write it twice. When the database cannot be reached the result is retried,
then spooled as JSON under the storage folder; a state change is kept in memory. Both are
written as soon as the database answers again (`catch_up`), or by the next run.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from db.engine import create_schema, session_scope
from db.schema import Run
from workers.jobs import JobSpec
from workers.metric_registry import column_metrics
from workers.zoo import ARCHS

log = logging.getLogger("convbench.store")
T = TypeVar("T")

RESULT_COLUMNS = (*column_metrics(), "metrics", "history", "epochs_done", "params", "flops",  # metric columns: registry
                  "input_size", "train_ips", "eval_ips", "wall_s", "peak_mem_mb", "hardware", "node", "versions",
                  "git_commit", "checkpoint", "launcher", "attempts")
RETRIES = (0.5, 2.0, 5.0)  # seconds between attempts before a result goes to the spool
Written = list[tuple[JobSpec, dict[str, Any]]]  # results a flush of the spool wrote: they still need their baseline


def now() -> datetime:
    return datetime.now(UTC)


def parse_time(value: Any) -> datetime | None:
    """A timestamp a worker recorded (ISO text once it has been through JSON); None if there is none."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def new_run(spec: JobSpec) -> Run:
    return Run(job_id=spec.job_id, suite=spec.suite, task=spec.task, arch=spec.arch,
               family=ARCHS[spec.arch].family if spec.arch in ARCHS else "detector", dataset=spec.dataset,
               seed=spec.seed, state="queued", config=spec.to_dict(), input_size=spec.input_size)


def result_values(spec: JobSpec, result: dict[str, Any], log_text: str | None) -> dict[str, Any]:
    """The columns a finished job writes. finished_at is when the worker finished, not when this row is written
    (a spooled result may be written a day later); log_path names the driver's own idea of the log, never the
    worker's, and is only shown, never opened."""
    values = {k: result.get(k) for k in RESULT_COLUMNS if k in result}
    values.update(state="done", error=None, finished_at=parse_time(result.get("finished_at")) or now(),
                  log_path=str(spec.folder / "log.txt"), log_text=log_text)
    return values


class Store:
    def __init__(self, url: str, spool: Path, retries: tuple[float, ...] = RETRIES):
        self.url, self.spool, self.retries = url, Path(spool), retries
        self.unsaved: dict[str, dict[str, Any]] = {}  # job id -> state fields the database has not taken yet
        self.away = False  # the last write failed: until one succeeds, try once instead of waiting out RETRIES

    def _retry(self, fn: Callable[[], T], delays: tuple[float, ...] | None = None) -> T:
        if delays is None:
            delays = () if self.away else self.retries
        for delay in (*delays, None):
            try:
                value = fn()
            except DBAPIError as exc:
                # Only a lost or refused connection is worth waiting for; a bad statement is a bug.
                if not (isinstance(exc, OperationalError) or exc.connection_invalidated):
                    raise
                if delay is None:
                    self.away = True
                    raise
                log.warning("database unreachable (%s); retrying in %.1fs", exc.__class__.__name__, delay)
                time.sleep(delay)
            else:
                self.away = False
                return value
        raise AssertionError("unreachable")

    def prepare(self) -> Written:
        """Brings the schema up to date; returns the results an earlier run spooled and this call wrote."""
        self._retry(lambda: create_schema(self.url))
        return self.flush_spool()

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

    def _write_state(self, job_id: str, fields: dict[str, Any]) -> None:
        with session_scope(self.url) as s:
            s.execute(update(Run).where(Run.job_id == job_id, Run.state != "done").values(**fields))

    def set_state(self, job_id: str, state: str, **fields: Any) -> None:
        """Records a state change; one the database cannot take now is kept and written by `catch_up`."""
        # Merged over what is still unsaved, so the started_at and attempts of a lost "running" survive.
        fields = {**self.unsaved.pop(job_id, {}), **fields, "state": state}
        try:
            self._retry(lambda: self._write_state(job_id, fields))
        except DBAPIError:
            self.unsaved[job_id] = fields
            log.warning("could not record state %s of %s yet; it is kept until the database answers", state, job_id)

    def _write_result(self, spec: JobSpec, values: dict[str, Any]) -> bool:
        with session_scope(self.url) as s:
            if s.get(Run, spec.job_id) is None:
                s.add(new_run(spec))
                s.flush()
            done = s.execute(update(Run).where(Run.job_id == spec.job_id, Run.state != "done").values(**values))
            return done.rowcount == 1

    def record(self, spec: JobSpec, result: dict[str, Any], log_text: str | None = None) -> bool:
        """Writes a finished job's result once; spools it to disk if the database stays away."""
        values = {**self.unsaved.get(spec.job_id, {}), **result_values(spec, result, log_text)}  # e.g. a lost start
        try:
            written = self._retry(lambda: self._write_result(spec, values))
        except DBAPIError as exc:
            self.spool_result(spec, result, log_text)
            log.error("database unreachable; result of %s kept in %s (%s)", spec.job_id, self.spool, exc.__class__.__name__)
            return False
        self.unsaved.pop(spec.job_id, None)  # a "running" still unsaved would change nothing now
        return written

    def spool_result(self, spec: JobSpec, result: dict[str, Any], log_text: str | None = None) -> Path:
        self.spool.mkdir(parents=True, exist_ok=True)
        path = self.spool / f"{spec.job_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"spec": spec.to_dict(), "result": result, "log_text": log_text}, default=str))
        tmp.replace(path)
        return path

    def spooled(self) -> list[Path]:
        return sorted(self.spool.glob("*.json")) if self.spool.is_dir() else []

    def flush_spool(self, delays: tuple[float, ...] | None = None) -> Written:
        """Writes the spooled results, stopping at the first the database refuses; returns those newly written."""
        written: Written = []
        for path in self.spooled():
            entry = json.loads(path.read_text())
            spec = JobSpec.from_dict(entry["spec"])
            values = {**self.unsaved.get(spec.job_id, {}), **result_values(spec, entry["result"], entry.get("log_text"))}
            try:
                if self._retry(partial(self._write_result, spec, values), delays):
                    written.append((spec, entry["result"]))
            except DBAPIError:
                break  # still away: the file stays for the next catch-up or the next run
            self.unsaved.pop(spec.job_id, None)
            path.unlink()
        return written

    def catch_up(self, delays: tuple[float, ...] | None = None) -> Written:
        """Writes what the database missed, spooled results first, then kept states; returns the results written."""
        written = self.flush_spool(delays)
        if self.spooled():
            return written  # the database is still away
        for job_id in list(self.unsaved):
            fields = self.unsaved.pop(job_id)
            try:
                self._retry(partial(self._write_state, job_id, fields), delays)
            except DBAPIError:
                self.unsaved[job_id] = fields
                break
        return written

    @property
    def behind(self) -> bool:
        """Whether some result or state has not reached the database yet."""
        return bool(self.unsaved) or bool(self.spooled())
