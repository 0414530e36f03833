"""Issue #12: the driver after a database outage.

What an outage held back (spooled results, state changes) is written as soon as PostgreSQL answers again,
at the latest before the driver exits; the final board query fails in one line, not a traceback;
finished_at is when the worker finished, not when the row was written; attempts counts the starts.
"""
from __future__ import annotations

import io
import json
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import runs_in
from test_orchestrator import driver, rows_or_none, wait_for, write_suite

from db.engine import create_schema, session_scope
from db.schema import Run
from orchestrator.campaign import print_board, settle
from orchestrator.store import Store
from workers.jobs import JobSpec

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def a_job(storage: Path, arch: str) -> JobSpec:
    return JobSpec(suite="outage", task="classification", arch=arch, dataset="synthetic",
                   dataset_options={"num_classes": 3}, recipe={"epochs": 1}, seed=0, input_size=8, storage=str(storage))


@contextmanager
def database_away(url: str):
    """PostgreSQL refuses every connection to the database (its open ones are cut) until the block ends."""
    name = sa.engine.make_url(url).database
    admin = sa.create_engine(url.rsplit("/", 1)[0] + "/test", isolation_level="AUTOCOMMIT")

    def allow(yes: bool) -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(yes).lower()}')
            if not yes:
                conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")

    allow(False)
    try:
        yield
    finally:
        allow(True)
        admin.dispose()


def row(url: str, job: JobSpec) -> Run:
    with session_scope(url) as s:
        return s.get(Run, job.job_id)


@pytest.mark.postgres
def test_what_an_outage_held_back_is_written_when_the_database_returns(pg_url: str, tmp_path: Path) -> None:
    create_schema(pg_url)
    store = Store(pg_url, tmp_path / "spool", retries=(0.1,))
    done, failed = a_job(tmp_path, "resnet18"), a_job(tmp_path, "alexnet")
    store.queue([done, failed])
    with database_away(pg_url):
        store.set_state(done.job_id, "running", started_at=T0, attempts=1, node="n1")
        store.set_state(failed.job_id, "running", started_at=T0, attempts=1, node="n2")
        store.set_state(failed.job_id, "failed", error="RuntimeError: boom", finished_at=T0 + timedelta(minutes=2),
                        log_text="attempt started\nboom\n")
        result = {"top1_err": 0.5, "finished_at": (T0 + timedelta(minutes=5)).isoformat(), "attempts": 2}
        assert not store.record(done, result, log_text="epoch=1\n")
        assert store.behind and store.catch_up() == [] and store.behind  # still away: nothing lost, nothing raised
    written = store.catch_up()
    assert [spec.job_id for spec, _ in written] == [done.job_id]  # its baseline submission follows
    assert not store.behind and not list((tmp_path / "spool").glob("*.json"))

    ok = row(pg_url, done)
    assert ok.state == "done" and ok.top1_err == 0.5 and ok.log_text == "epoch=1\n"
    assert ok.finished_at == T0 + timedelta(minutes=5)  # the worker's time, not the write's
    assert ok.started_at == T0 and ok.attempts == 2 and ok.node == "n1"
    bad = row(pg_url, failed)
    assert bad.state == "failed" and bad.error == "RuntimeError: boom" and bad.log_text.endswith("boom\n")
    assert bad.finished_at == T0 + timedelta(minutes=2) and bad.started_at == T0 and bad.attempts == 1


@pytest.mark.postgres
def test_the_final_board_says_in_one_line_that_the_database_is_away(pg_url: str, tmp_path: Path) -> None:
    create_schema(pg_url)
    store = Store(pg_url, tmp_path / "spool", retries=(0.1,))
    job = a_job(tmp_path, "resnet18")
    out = io.StringIO()
    with database_away(pg_url):
        store.record(job, {"top1_err": 0.25, "finished_at": T0.isoformat()})
        store.set_state(a_job(tmp_path, "alexnet").job_id, "running", attempts=1)
        settle(store, out)
        assert not print_board(store, "outage", out)
    text = out.getvalue()
    assert "Traceback" not in text and "postgres" not in text  # nor the URL
    assert f"1 results are kept in {store.spool} and 1 job states are not recorded" in text
    assert "could not print the leaderboard: the database is unreachable (OperationalError)" in text
    out = io.StringIO()
    assert print_board(store, "outage", out)  # back: the next call prints the board
    assert "(no finished runs)" in out.getvalue()


@pytest.mark.slow
@pytest.mark.postgres
def test_after_an_outage_the_driver_leaves_no_row_running(ray_head, pg_url: str, tmp_path: Path) -> None:
    create_schema(pg_url)
    storage = tmp_path / "runs"
    suite = write_suite(tmp_path, "dbback", ["resnet18", "alexnet"], epochs=3, per_class=30)
    proc = driver(suite, pg_url, storage, ray_head.address, ray_head.env)
    try:
        wait_for(lambda: any(r.state == "running" for r in rows_or_none(pg_url)), every=0.2)
        with database_away(pg_url):  # until a job has finished into the spool
            wait_for(lambda: next((storage / "_pending_results").glob("*.json"), None), timeout=300)
        back = datetime.now(UTC)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
    rows = runs_in(pg_url)
    assert len(rows) == 2 and {r.state for r in rows} == {"done"}, out
    assert not list((storage / "_pending_results").glob("*.json"))
    for run in rows:
        result = json.loads((Path(run.log_path).parent / "result.json").read_text())
        assert run.finished_at == datetime.fromisoformat(result["finished_at"])
        assert run.started_at <= run.finished_at and run.attempts == 1
        assert "attempt started" in run.log_text and "epoch=3" in run.log_text
    assert min(r.finished_at for r in rows) < back  # the spooled one: its time, not that of the late write
