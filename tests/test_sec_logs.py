"""Issue #12: a run's log is data the system owns, never a path taken from a row or a result.

The driver reads `<storage root>/<job folder>/log.txt` itself, refuses what resolves outside the root, caps it
and stores the text in runs.log_text; the Run detail page shows only that text and opens no file.
"""
from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from db.engine import create_schema, session_scope
from db.schema import Run
from orchestrator.scheduler import LOG_CAP_BYTES, read_job_log
from orchestrator.store import Store
from workers.jobs import JobSpec

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "leaderboard" / "app.py")
SECRET = "convbench-secret-7f3a9c do not show"


def a_job(storage: Path, arch: str = "resnet18") -> JobSpec:
    return JobSpec(suite="logs", task="classification", arch=arch, dataset="synthetic",
                   dataset_options={"num_classes": 3}, recipe={"epochs": 1}, seed=0, input_size=8, storage=str(storage))


def secret_file(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    secret = outside / "secret.txt"
    secret.write_text(SECRET + "\n")
    return secret


def environ_entries() -> list[str]:
    """This process's environment as /proc shows it: what the old page printed to any visitor."""
    raw = Path("/proc/self/environ").read_bytes().decode(errors="replace")
    return [e for e in raw.split("\0") if len(e) >= 12]


# --- the driver's reader ------------------------------------------------------------------------

def test_the_driver_reads_the_log_in_the_jobs_own_folder(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    job = a_job(root)
    job.folder.mkdir(parents=True)
    (job.folder / "log.txt").write_text("attempt started\nepoch=1 loss=0.5\n")
    assert read_job_log(root, job) == "attempt started\nepoch=1 loss=0.5\n"
    assert read_job_log(root, a_job(root, "alexnet")) is None  # no log: nothing, no error


def test_a_log_symlinked_out_of_the_storage_root_is_refused(tmp_path: Path) -> None:
    root, secret = tmp_path / "runs", secret_file(tmp_path)
    job = a_job(root)
    job.folder.mkdir(parents=True)
    (job.folder / "log.txt").symlink_to(secret)
    assert read_job_log(root, job) is None
    (job.folder / "log.txt").unlink()
    (job.folder / "log.txt").symlink_to("/proc/self/environ")
    assert read_job_log(root, job) is None


def test_a_job_folder_symlinked_out_of_the_storage_root_is_refused(tmp_path: Path) -> None:
    root, secret = tmp_path / "runs", secret_file(tmp_path)
    (secret.parent / "log.txt").write_text(SECRET)
    job = a_job(root)
    root.mkdir()
    job.folder.symlink_to(secret.parent, target_is_directory=True)
    assert read_job_log(root, job) is None


def test_dot_dot_in_a_forged_spec_does_not_leave_the_root(tmp_path: Path) -> None:
    # A spooled spec is read back from the shared volume: its arch and storage are not trusted for paths.
    root = tmp_path / "runs"
    secret_file(tmp_path)
    root.mkdir()
    forged = a_job(root / "a" / "b", arch="../../../outside/x")
    naive = forged.folder / "log.txt"  # where a reader that trusted the spec would look
    naive.parent.mkdir(parents=True)
    naive.write_text(SECRET)
    assert naive.resolve().is_relative_to(tmp_path / "outside")
    assert read_job_log(root, forged) is None


def test_a_symlink_inside_the_root_is_followed(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    job = a_job(root)
    job.folder.mkdir(parents=True)
    (root / "shared.log").write_text("kept inside\n")
    (job.folder / "log.txt").symlink_to(root / "shared.log")
    assert read_job_log(root, job) == "kept inside\n"


def test_a_long_log_keeps_its_tail_and_says_so(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    job = a_job(root)
    job.folder.mkdir(parents=True)
    lines = [f"step {i:07d} loss=0.{i % 97:02d}" for i in range(20_000)]  # ~ 450 KB
    (job.folder / "log.txt").write_text("\n".join(lines) + "\n\0")
    text = read_job_log(root, job)
    assert text.startswith("[log truncated: the last 200,000 of ") and text.endswith(lines[-1] + "\n")
    assert len(text.encode()) < LOG_CAP_BYTES + 100 and "\0" not in text  # PostgreSQL text takes no NUL
    assert lines[0] not in text


def test_a_fifo_named_log_does_not_hang_the_driver(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    job = a_job(root)
    job.folder.mkdir(parents=True)
    os.mkfifo(job.folder / "log.txt")
    assert read_job_log(root, job) is None


def test_the_row_keeps_the_drivers_log_path_not_the_results(db_url: str, tmp_path: Path) -> None:
    job = a_job(tmp_path / "runs")
    store = Store(db_url, tmp_path / "spool", retries=())
    assert store.record(job, {"top1_err": 0.5, "log_path": "/proc/self/environ"}, log_text="epoch=1\n")
    with session_scope(db_url) as s:
        run = s.get(Run, job.job_id)
        assert run.log_path == str(job.folder / "log.txt") and run.log_text == "epoch=1\n"


# --- the Run detail page -----------------------------------------------------------------------

def hostile_rows(tmp_path: Path) -> dict[str, str]:
    """Rows whose log_path points at secrets, as the runner role or a forged result.json could write them."""
    secret = secret_file(tmp_path)
    storage = tmp_path / "runs" / "job-link"
    storage.mkdir(parents=True)
    (storage / "log.txt").symlink_to(secret)
    dot_dot = os.path.relpath(secret, Path.cwd())
    assert dot_dot.startswith("..")
    return {"job-environ": "/proc/self/environ", "job-dotdot": dot_dot, "job-link": str(storage / "log.txt")}


@pytest.fixture
def site(tmp_path: Path, monkeypatch) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'site.db'}"
    create_schema(url)
    paths = hostile_rows(tmp_path)
    with session_scope(url) as s:
        for job_id, path in paths.items():
            s.add(Run(job_id=job_id, suite="s", arch="resnet18", dataset="synthetic", state="done", log_path=path,
                      created_at=datetime(2025, 1, 1, tzinfo=UTC)))
        s.add(Run(job_id="job-stored", suite="s", arch="alexnet", dataset="synthetic", state="done",
                  log_path="/proc/self/environ", log_text="epoch=3 loss=0.25\nfinished cleanly\n",
                  created_at=datetime(2025, 1, 2, tzinfo=UTC)))
    monkeypatch.setenv("CONVBENCH_DB", url)
    return paths


def run_page(job: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60).run()
    app.switch_page("views/run.py")
    app.query_params["job"] = job
    app.run()
    assert not app.exception, app.exception
    return app


def shown(app: AppTest) -> str:
    """What the page shows as code and captions: where a log would appear."""
    return "\n".join([c.value for c in app.code] + [c.value for c in app.caption])


def test_the_run_page_shows_no_file_a_row_names(site: dict[str, str]) -> None:
    environ = environ_entries()
    assert environ  # the probe: the old page printed these
    for job in site:
        app = run_page(job)
        assert app.selectbox[0].value == job
        text = shown(app)
        assert SECRET not in text, job
        assert not [e for e in environ if e in text], job
        assert not app.code and "No log recorded." in text


def test_the_run_page_shows_the_stored_log_text(site: dict[str, str]) -> None:
    app = run_page("job-stored")
    assert [c.value.strip() for c in app.code] == ["epoch=3 loss=0.25\nfinished cleanly"]
    fields = dict(zip(app.table[0].value["field"], app.table[0].value["value"]))
    assert fields["log"] == "/proc/self/environ"  # the recorded path is shown as a string, never opened
    assert not [e for e in environ_entries() if e in shown(app)]


def test_run_record_carries_the_log_text(site: dict[str, str]) -> None:
    from leaderboard.queries import run_record

    assert run_record(None, "job-stored")["log_text"].endswith("finished cleanly\n")
    assert run_record(None, "job-environ")["log_text"] is None
    with session_scope(None) as s:  # the page reads nothing but the row
        assert s.scalar(sa.select(sa.func.count()).select_from(Run)) == 4
