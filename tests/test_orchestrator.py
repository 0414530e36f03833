"""The orchestrator under faults: a killed worker, a killed driver, a database that went away, two nodes."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import runs_in

ROOT = Path(__file__).resolve().parent.parent

SUITE = """
name = "{name}"
architectures = {archs}
datasets = [{{ name = "synthetic", num_classes = 6, image_size = 32, train_per_class = {per_class}, val_per_class = 4, test_per_class = 4 }}]
max_failures = 2
[recipe]
epochs = {epochs}
batch_size = 8
crop_scale = [0.6, 1.0]
"""


def write_suite(tmp_path: Path, name: str, archs: list[str], epochs: int = 2, per_class: int = 4) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(SUITE.format(name=name, archs=str(archs).replace("'", '"'), epochs=epochs, per_class=per_class))
    return path


def driver(suite: Path, url: str, storage: Path, address: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", "--suite", str(suite), "--db", url, "--storage", str(storage),
         "--address", address], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def rows_or_none(url: str) -> list:
    """The runs so far; none while the driver has not created the schema yet."""
    try:
        return runs_in(url)
    except sa.exc.OperationalError:
        return []


def wait_for(condition, timeout: float = 300, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not met in time")


@pytest.mark.slow
def test_a_killed_worker_resumes_from_its_checkpoint_with_one_result(ray_head, tmp_path):
    url, storage = f"sqlite:///{tmp_path}/c.db", tmp_path / "runs"
    suite = write_suite(tmp_path, "killworker", ["resnet18"], epochs=4, per_class=60)
    proc = driver(suite, url, storage, ray_head.address, ray_head.env)

    first_checkpoint = wait_for(lambda: next(storage.glob("*/checkpoints/epoch_0001.pt"), None))
    log = first_checkpoint.parent.parent / "log.txt"
    pid = int(re.findall(r"attempt started: pid (\d+)", log.read_text())[-1])
    os.kill(pid, signal.SIGKILL)

    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    (run,) = runs_in(url)
    assert run.state == "done" and run.epochs_done == 4 and run.attempts == 2  # the killed start and the retry
    assert [h["epoch"] for h in run.history] == [1, 2, 3, 4]
    text = log.read_text()
    assert len(re.findall(r"attempt started", text)) == 2
    assert re.search(r"resumed from epoch_000[1-3]\.pt", text)


@pytest.mark.slow
def test_a_killed_driver_loses_nothing_and_a_rerun_finishes_only_the_rest(ray_head, tmp_path):
    url, storage = f"sqlite:///{tmp_path}/c.db", tmp_path / "runs"
    suite = write_suite(tmp_path, "killdriver", ["resnet18", "alexnet", "googlenet"], epochs=2, per_class=20)
    proc = driver(suite, url, storage, ray_head.address, ray_head.env)
    wait_for(lambda: any(r.state == "done" for r in rows_or_none(url)), every=0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    done_before = {r.job_id for r in runs_in(url) if r.state == "done"}
    assert 1 <= len(done_before) < 3

    rerun = driver(suite, url, storage, ray_head.address, ray_head.env)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    finished = re.search(r"3 jobs, (\d) already done, (\d) to run", out)
    assert finished and int(finished.group(1)) >= len(done_before) and sum(map(int, finished.groups())) == 3
    rows = runs_in(url)
    assert len(rows) == 3 and all(r.state == "done" for r in rows)

    again = driver(suite, url, storage, ray_head.address, ray_head.env)
    out, _ = again.communicate(timeout=300)
    assert "3 already done, 0 to run" in out
    assert len(runs_in(url)) == 3


@pytest.mark.slow
def test_results_survive_a_database_that_went_away(ray_head, pg_url, tmp_path):
    from db.engine import create_schema

    create_schema(pg_url)
    storage = tmp_path / "runs"
    suite = write_suite(tmp_path, "dbdown", ["resnet18", "alexnet"], epochs=3, per_class=30)
    name = sa.engine.make_url(pg_url).database
    admin = sa.create_engine(pg_url.rsplit("/", 1)[0] + "/test", isolation_level="AUTOCOMMIT")

    def database(allow: bool) -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}')
            if not allow:
                conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")

    proc = driver(suite, pg_url, storage, ray_head.address, ray_head.env)
    wait_for(lambda: any(r.state == "running" for r in rows_or_none(pg_url)), every=0.2)
    database(allow=False)
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        database(allow=True)
    spooled = list((storage / "_pending_results").glob("*.json"))
    assert len(spooled) == 2, out
    assert "kept in" in out
    # Still away at the end: one line says so, the board's query does not crash the driver.
    assert "Traceback" not in out and "could not print the leaderboard: the database is unreachable" in out, out
    assert proc.returncode == 0, out
    assert not [r for r in runs_in(pg_url) if r.state == "done"]

    rerun_started = datetime.now(UTC)
    rerun = driver(suite, pg_url, storage, ray_head.address, ray_head.env)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    assert "2 already done, 0 to run" in out
    rows = runs_in(pg_url)
    assert len(rows) == 2 and all(r.state == "done" and r.top1_err is not None for r in rows)
    assert not list((storage / "_pending_results").glob("*.json"))
    for run in rows:  # written by the rerun, dated by the worker that finished it
        result = json.loads((Path(run.log_path).parent / "result.json").read_text())
        assert run.finished_at == datetime.fromisoformat(result["finished_at"]) < rerun_started
        assert run.attempts == 1 and "attempt started" in run.log_text
    admin.dispose()


@pytest.mark.slow
def test_jobs_land_on_both_nodes_of_a_two_node_cluster(tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        url, storage = f"sqlite:///{tmp_path}/c.db", tmp_path / "runs"
        suite = write_suite(tmp_path, "twonodes", ["resnet18", "alexnet"], epochs=2, per_class=20)
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        proc = driver(suite, url, storage, cluster.address, env)
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out
        nodes = {r.node.split("/")[-1] for r in runs_in(url)}
        expected = {n.node_id[:12] for n in cluster.list_all_nodes()}
        assert nodes == expected and len(nodes) == 2
    finally:
        cluster.shutdown()


@pytest.mark.slow
def test_a_multi_worker_job_runs_ddp_through_torchtrainer(ray_head, tmp_path):
    url, storage = f"sqlite:///{tmp_path}/c.db", tmp_path / "runs"
    suite = write_suite(tmp_path, "ddp", ["resnet18"], epochs=2, per_class=8)
    suite.write_text(suite.read_text() + "[resources]\ncpus = 1\nworkers = 2\n")
    proc = driver(suite, url, storage, ray_head.address, ray_head.env)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    (run,) = runs_in(url)
    assert run.state == "done" and run.launcher == "trainer" and run.epochs_done == 2
    assert run.attempts == 1  # one start of the job, not one per rank
    assert 0 <= run.top5_err <= run.top1_err <= 1
    log = (Path(run.checkpoint).parent.parent / "log.txt").read_text()
    assert "rank 0 of 2" in log


@pytest.mark.slow
def test_a_detection_job_goes_through_the_same_path(ray_head, tmp_path):
    import tomllib

    smoke = tomllib.loads((ROOT / "suites" / "smoke.toml").read_text())
    detection = smoke["detection"]
    lines = ['name = "det"', "[detection]", 'architectures = ["alexnet"]', f"input_size = {detection['input_size']}",
             "datasets = [{ " + ", ".join(f"{k} = {v!r}".replace("'", '"') for k, v in detection["datasets"][0].items()) + " }]",
             "[detection.recipe]", *[f"{k} = {v}" for k, v in detection["recipe"].items()]]
    suite = tmp_path / "det.toml"
    suite.write_text("\n".join(lines) + "\n")
    url, storage = f"sqlite:///{tmp_path}/c.db", tmp_path / "runs"
    proc = driver(suite, url, storage, ray_head.address, ray_head.env)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    (run,) = runs_in(url)
    assert run.task == "detection" and run.state == "done" and run.launcher == "task"
    assert 0.0 <= run.map50 <= 1.0 and run.top1_err is None
    assert "mAP50" in out


DETECTION_DDP_SUITE = """
name = "detddp"
[detection]
architectures = ["resnet18"]
input_size = 32
datasets = [{ name = "synthetic-scenes", num_classes = 3, image_size = 96, train_images = 16, val_images = 6, test_images = 4 }]
[detection.recipe]
epochs = 2
batch_size = 16
max_steps_per_epoch = 2
max_proposals = 60
compare_proposals = []
[detection.resources]
cpus = 1
workers = 2
"""


@pytest.mark.slow
def test_a_two_worker_detection_job_trains_ddp_through_torchtrainer_and_resumes(ray_head, tmp_path):
    suite = tmp_path / "detddp.toml"
    suite.write_text(DETECTION_DDP_SUITE)
    url, storage = f"sqlite:///{tmp_path}/c.db", tmp_path / "runs"
    proc = driver(suite, url, storage, ray_head.address, ray_head.env)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    (run,) = runs_in(url)
    assert run.task == "detection" and run.state == "done" and run.launcher == "trainer" and run.epochs_done == 2
    assert 0.0 <= run.map50 <= 1.0 and run.top1_err is None and run.config["resources"]["workers"] == 2
    # both ranks trained: each took its half of every batch (16 regions a step, 2 steps an epoch, 2 epochs)
    assert run.metrics["world_size"] == 2 and run.metrics["train_items_by_rank"] == [32, 32]
    assert [h["epoch"] for h in run.history] == [1, 2]
    folder = Path(run.checkpoint).parent.parent
    log = (folder / "log.txt").read_text()
    assert "rank 0 of 2" in log and "epoch 2/2" in log and (folder / "predictions.csv").is_file()

    # As if the job died in epoch 2: a new database and no result on disk, so it runs again, from epoch 1's
    # checkpoint, through the same TorchTrainer path.
    (folder / "result.json").unlink()
    for later in sorted((folder / "checkpoints").glob("epoch_*.pt"))[1:]:
        later.unlink()
    again_url = f"sqlite:///{tmp_path}/again.db"
    proc = driver(suite, again_url, storage, ray_head.address, ray_head.env)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    (rerun,) = runs_in(again_url)
    assert rerun.state == "done" and rerun.launcher == "trainer" and rerun.job_id == run.job_id
    assert "resumed from" in (folder / "log.txt").read_text()
    assert rerun.history[0] == run.history[0]  # epoch 1 was not trained again
    assert rerun.metrics["train_items_by_rank"] == [16, 16]  # only epoch 2
    assert rerun.history[1]["train_loss"] == pytest.approx(run.history[1]["train_loss"], rel=1e-4)


@pytest.mark.slow
def test_a_failing_job_is_marked_failed_and_the_campaign_goes_on(ray_head, tmp_path):
    url, storage = f"sqlite:///{tmp_path}/c.db", tmp_path / "runs"
    suite = write_suite(tmp_path, "failing", ["resnet18"], epochs=1, per_class=4)
    missing = tmp_path / "no-such-dataset"
    suite.write_text(suite.read_text().replace(
        "datasets = [", f'datasets = [{{ name = "imagefolder", root = "{missing}" }}, '))
    proc = driver(suite, url, storage, ray_head.address, ray_head.env)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1, out
    by_dataset = {r.dataset: r for r in runs_in(url)}
    assert by_dataset["synthetic"].state == "done"
    failed = by_dataset["imagefolder"]
    assert failed.state == "failed" and "DatasetError" in failed.error and str(missing) in failed.error
    assert failed.attempts == 1 and "attempt started" in failed.log_text  # a failed job's log is kept too
    assert "1 done, 1 failed" in out
