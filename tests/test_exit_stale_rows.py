"""The driver's exit with the database still away names the jobs whose rows may still read `running`.

Their results wait in the spool and their failures were kept in memory only: the next run of the suite writes
the one and runs the other again, and the exit message says so, job by job.
"""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from helpers import runs_in
from test_sec_outage import database_away

from orchestrator.campaign import settle
from orchestrator.store import Store
from workers.jobs import JobSpec


def a_job(storage: Path, arch: str) -> JobSpec:
    return JobSpec(suite="away", task="classification", arch=arch, dataset="synthetic",
                   dataset_options={"num_classes": 3}, recipe={"epochs": 1}, seed=0, input_size=8, storage=str(storage))


@pytest.mark.postgres
def test_the_exit_message_names_the_rows_left_running_and_the_next_run_fixes_them(pg_url: str, tmp_path: Path) -> None:
    url = pg_url
    done, failed, fine = a_job(tmp_path, "resnet18"), a_job(tmp_path, "alexnet"), a_job(tmp_path, "vgg11")
    store = Store(url, tmp_path / "runs" / "_pending_results", retries=())
    store.prepare()
    store.queue([done, failed, fine])
    for job in (done, failed, fine):
        store.set_state(job.job_id, "running", attempts=1)
    assert store.record(fine, {"top1_err": 0.5})

    out = io.StringIO()
    with database_away(url):
        assert not store.record(done, {"top1_err": 0.25})
        store.set_state(failed.job_id, "failed", error="RuntimeError: boom")
        settle(store, out)
    text = out.getvalue()
    assert "1 results are kept in" in text and "1 job states are not recorded" in text
    assert "may still read `running`" in text and "the next run" in text
    assert f"{done.job_id}  (done, its result kept in the spool)" in text
    assert f"{failed.job_id}  (failed, not recorded)" in text
    assert fine.job_id not in text  # its row is right

    rows = {r.job_id: r.state for r in runs_in(url)}
    assert rows == {done.job_id: "running", failed.job_id: "running", fine.job_id: "done"}  # what the message said

    # The next run: the spooled result is written, and the failed job is queued to run again.
    again = Store(url, tmp_path / "runs" / "_pending_results", retries=())
    assert [spec.job_id for spec, _ in again.prepare()] == [done.job_id]
    again.queue([failed])
    rows = {r.job_id: r.state for r in runs_in(url)}
    assert rows == {done.job_id: "done", failed.job_id: "queued", fine.job_id: "done"}
