"""Issue #12 follow-up: the baselines' prediction file is the driver's own path, never one from a result.

The driver submits <storage root>/<job folder>/predictions.csv, read by the log's rules: inside the root once
symlinks and `..` are resolved, a regular file, no larger than an upload (MAX_BYTES). A worker's result (or a
spooled one on a shared volume) that names /etc/passwd, or a link out of the root, submits nothing from that file.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from db.engine import create_schema, session_scope
from db.schema import Submission
from leaderboard.challenges import create_challenge
from leaderboard.submissions import MAX_BYTES
from orchestrator.baselines import submit_baseline
from orchestrator.campaign import submit_baselines
from orchestrator.scheduler import PREDICTIONS_FILE, read_job_bytes
from orchestrator.store import Store
from workers.datasets import held_test_labels
from workers.jobs import JobSpec

OPTIONS = {"num_classes": 10, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 5}

OPENED: list[str] = []
_WATCHING = [False]


def _audit(event: str, args: tuple) -> None:
    if _WATCHING[0] and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # an audit hook stays for the process: it records only while a test watches


@pytest.fixture
def watch_opens():
    OPENED.clear()
    _WATCHING[0] = True
    yield OPENED
    _WATCHING[0] = False


def perfect() -> bytes:
    """A valid file that scores every test image right: what a planted file would be."""
    labels = held_test_labels("synthetic", OPTIONS)
    rows = [f"{image_id},{label}" for image_id, label in labels.items()]
    return ("image_id,pred_1\n" + "\n".join(rows) + "\n").encode()


@pytest.fixture
def setup(tmp_path: Path):
    """A SQLite database with a challenge on the job's test split and the job's run recorded; the storage root."""
    url = create_schema(f"sqlite:///{tmp_path / 'c.db'}")
    create_challenge(url, "syn", "synthetic", OPTIONS, title="Synthetic")
    root = tmp_path / "runs"
    job = JobSpec(suite="paths", task="classification", arch="resnet18", dataset="synthetic", dataset_options=OPTIONS,
                  recipe={"epochs": 1}, seed=0, input_size=8, storage=str(root))
    Store(url, tmp_path / "spool", retries=()).record(job, {"top1_err": 0.5})
    job.folder.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    planted = outside / "predictions.csv"
    planted.write_bytes(perfect())
    return url, root, job, planted


def submissions(url: str) -> int:
    with session_scope(url) as s:
        return s.scalar(sa.select(sa.func.count()).select_from(Submission))


def test_the_jobs_own_predictions_are_submitted(setup) -> None:
    url, root, job, _ = setup
    (job.folder / PREDICTIONS_FILE).write_bytes(perfect())
    result = submit_baseline(url, job, root)
    assert result is not None and result.primary_score == pytest.approx(0.0) and submissions(url) == 1


def test_a_result_naming_etc_passwd_or_a_file_outside_opens_nothing(setup, watch_opens, caplog) -> None:
    url, root, job, planted = setup
    for named in ("/etc/passwd", str(planted)):
        written = [(job, {"top1_err": 0.5, "predictions": named})]  # a result, as a flushed spool hands it back
        submit_baselines(Store(url, root / "_pending_results"), written, root)
    assert submissions(url) == 0
    assert not [p for p in watch_opens if p in ("/etc/passwd", str(planted))], watch_opens


def test_a_predictions_link_out_of_the_root_is_refused(setup, watch_opens, caplog) -> None:
    url, root, job, planted = setup
    (job.folder / PREDICTIONS_FILE).symlink_to(planted)
    with caplog.at_level(logging.WARNING, "convbench.baselines"):
        assert submit_baseline(url, job, root) is None
    assert submissions(url) == 0 and "outside the storage root" in caplog.text
    assert str(planted) not in watch_opens


def test_a_job_folder_linked_out_of_the_root_is_refused(setup) -> None:
    url, root, job, planted = setup
    job.folder.rmdir()
    job.folder.symlink_to(planted.parent, target_is_directory=True)
    assert submit_baseline(url, job, root) is None and submissions(url) == 0
    assert read_job_bytes(root, job, PREDICTIONS_FILE, MAX_BYTES) is None


def test_an_oversized_or_special_file_is_not_read(setup, caplog) -> None:
    url, root, job, _ = setup
    path = job.folder / PREDICTIONS_FILE
    with open(path, "wb") as f:  # sparse: MAX_BYTES + 1 bytes, nothing on disk
        f.truncate(MAX_BYTES + 1)
    assert read_job_bytes(root, job, PREDICTIONS_FILE, MAX_BYTES) is None
    with caplog.at_level(logging.WARNING, "convbench.baselines"):
        assert submit_baseline(url, job, root) is None
    assert "at most" in caplog.text and submissions(url) == 0
    path.unlink()
    os.mkfifo(path)  # a FIFO must not hang the driver
    assert read_job_bytes(root, job, PREDICTIONS_FILE, MAX_BYTES) is None
    assert submit_baseline(url, job, root) is None and submissions(url) == 0
