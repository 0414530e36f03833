"""Running jobs on Ray: each job asks for its resources and Ray queues what does not fit.

Two launchers share one training loop (workers.jobs.TASKS):

- `task`: a one-worker job is a Ray task. Ray keeps idle worker processes warm, so torch is
  imported once per process and a job's fixed cost is scheduling, not a worker-group start.
  Ray retries the task when its process dies; the loop resumes from the job's checkpoint.
- `trainer`: a multi-worker job runs through Ray Train's TorchTrainer (DDP over gloo on CPU,
  NCCL on GPU), restarted by FailureConfig, resuming from the same checkpoint folder.

Either way the result is also written to `result.json` in the job's folder, so a driver that
died after a job finished finds the result there instead of training again. Each start of a job
(a first run, a Ray retry, a TorchTrainer restart, a resumed re-run) is numbered in the folder's
`attempts` file, reported to the driver and recorded with the result.

The driver reads a job's log itself, at <its own storage root>/<the job's folder name>/log.txt, never
from a path that a result or a row carries: a log that resolves outside the root is not read.
"""
from __future__ import annotations

import json
import os
import stat
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ray

from workers.jobs import JobSpec

RESULT_FILE = "result.json"
ATTEMPTS_FILE = "attempts"
LOG_FILE = "log.txt"
LOG_CAP_BYTES = 200_000  # a log's tail in the database: its end says how the job finished
LAUNCHERS = ("task", "trainer")


def connect(address: str | None = None, num_cpus: int | None = None) -> None:
    """Joins the cluster at `address` (or $RAY_ADDRESS); without either, starts a local one."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    env = {"env_vars": {"PYTHONWARNINGS": "ignore::UserWarning"}}
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=False)
    else:
        # "local": a new instance even when another Ray runs on this machine (plain init would join it).
        # worker_niceness 0: Ray starts its workers at nice 15 by default, and on a loaded machine they starve.
        ray.init(address="local", num_cpus=num_cpus, runtime_env=env, log_to_driver=False, include_dashboard=False,
                 _system_config={"worker_niceness": 0})


def launcher_for(spec: JobSpec) -> str:
    return "trainer" if spec.resources.workers > 1 else "task"


def saved_result(spec: JobSpec) -> dict[str, Any] | None:
    path = spec.folder / RESULT_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # torn by a kill mid-write: the job runs again from its checkpoint


def _read_tail(path: Path, cap: int) -> str | None:
    """The last `cap` bytes of a regular file, opened without following a link; None for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # NONBLOCK: a FIFO must not hang the driver
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        size = info.st_size
        f.seek(max(0, size - cap))
        data = f.read(cap)
    text = data.decode("utf-8", errors="replace").replace("\x00", "")  # PostgreSQL text holds no NUL
    if size > cap:
        text = f"[log truncated: the last {cap:,} of {size:,} bytes]\n" + text
    return text


def read_job_log(root: str | Path, spec: JobSpec, cap: int = LOG_CAP_BYTES) -> str | None:
    """The job's log as text to store, capped to its tail; None if there is none inside `root`.

    The path is the driver's own: `root`/<the spec's folder name>/log.txt. Symlinks and `..` are resolved
    first, and a log that resolves outside `root` (a link planted on a shared volume) is refused.
    """
    base = Path(root).expanduser().resolve()
    try:
        path = (base / spec.folder.name / LOG_FILE).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return None
    if not path.is_relative_to(base):
        return None
    return _read_tail(path, cap)


def count_attempt(spec: JobSpec) -> int:
    """Numbers this start of the job in its folder's attempts file; returns the number (1 for the first)."""
    path = spec.folder / ATTEMPTS_FILE
    try:
        before = int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        before = 0
    spec.folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(before + 1))
    tmp.replace(path)
    return before + 1


def _save_result(spec: JobSpec, result: dict[str, Any]) -> None:
    path = spec.folder / RESULT_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=str))
    tmp.replace(path)


@ray.remote(num_cpus=0)
class ProgressBoard:
    """Latest report of every running job, read by the driver for the live table and the database."""

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, Any]] = {}

    def report(self, metrics: dict[str, Any]) -> None:
        # Merged, so an epoch's report keeps the attempt and node the start reported.
        self.latest[metrics["job_id"]] = {**self.latest.get(metrics["job_id"], {}), **metrics}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return dict(self.latest)


def _context(spec: JobSpec, board: Any, rank: int = 0, world_size: int = 1, cls: type | None = None):
    import torch

    from workers.context import RunContext, pick_device

    node = ray.get_runtime_context().get_node_id()
    attempt = count_attempt(spec) if rank == 0 else 0  # one number per start of the job, not per rank
    if rank == 0:
        board.report.remote({"job_id": spec.job_id, "state": "running", "node": node, "attempt": attempt,
                             "started_at": datetime.now(timezone.utc).isoformat()})
    ctx = (cls or RunContext)(job_id=spec.job_id, storage=spec.folder, rank=rank, world_size=world_size,
                              device=pick_device(spec.uses_gpu), on_report=lambda m: board.report.remote(m))
    ctx.log(f"attempt started: pid {os.getpid()} on node {node} as rank {rank} of {world_size}"
            + (f", attempt {attempt}" if rank == 0 else ""))
    return ctx, node, torch, attempt


def _finish(spec: JobSpec, result: dict[str, Any], node_id: str, launcher: str, attempt: int) -> dict[str, Any]:
    # finished_at: when the job finished here, which the database keeps even if the row is written later.
    result = {"finished_at": datetime.now(timezone.utc).isoformat(), **result,
              "node": f"{result.get('node') or ''}/{node_id[:12]}", "launcher": launcher, "attempts": attempt}
    _save_result(spec, result)
    return result


# A dead worker process is retried (max_retries, set per job); an exception in the job is its
# result, reported as the failure, since running the same code again would fail the same way.
@ray.remote(max_retries=2, retry_exceptions=False)
def run_as_task(spec_dict: dict[str, Any], board: Any) -> dict[str, Any]:
    from workers.jobs import TASKS

    spec = JobSpec.from_dict(spec_dict)
    ctx, node_id, torch, attempt = _context(spec, board)
    torch.set_num_threads(max(1, int(spec.resources.cpus)))
    return _finish(spec, TASKS[spec.task](spec, ctx), node_id, "task", attempt)


def _train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train

    from workers.context import RayTrainContext
    from workers.jobs import TASKS

    spec = JobSpec.from_dict(config["spec"])
    train_ctx = ray.train.get_context()
    ctx, node_id, torch, attempt = _context(spec, config["board"], train_ctx.get_world_rank(),
                                            train_ctx.get_world_size(), RayTrainContext)
    torch.set_num_threads(max(1, int(spec.resources.cpus)))
    result = TASKS[spec.task](spec, ctx)
    if ctx.is_main:
        _finish(spec, result, node_id, "trainer", attempt)


@ray.remote(num_cpus=0, max_retries=0)
def run_with_trainer(spec_dict: dict[str, Any], board: Any) -> dict[str, Any]:
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    spec = JobSpec.from_dict(spec_dict)
    spec.folder.mkdir(parents=True, exist_ok=True)
    res = spec.resources
    trainer = TorchTrainer(
        _train_loop_per_worker,
        train_loop_config={"spec": spec_dict, "board": board},
        torch_config=TorchConfig(backend="nccl" if res.gpus > 0 else "gloo"),
        scaling_config=ScalingConfig(num_workers=res.workers, use_gpu=res.gpus > 0,
                                     resources_per_worker={"CPU": res.cpus, **({"GPU": res.gpus} if res.gpus else {})}),
        run_config=RunConfig(name=f"train-{spec.job_id}", storage_path=str(Path(spec.storage).resolve() / "_ray_train"),
                             failure_config=FailureConfig(max_failures=spec.max_failures)),
    )
    trainer.fit()
    result = saved_result(spec)
    if result is None:
        raise RuntimeError(f"TorchTrainer finished job {spec.job_id} without writing {spec.folder / RESULT_FILE}")
    return result


def submit(spec: JobSpec, board: Any) -> ray.ObjectRef:
    spec_dict = spec.to_dict()
    res = spec.resources
    if launcher_for(spec) == "trainer":
        return run_with_trainer.remote(spec_dict, board)
    return run_as_task.options(num_cpus=res.cpus, num_gpus=res.gpus, max_retries=spec.max_failures).remote(spec_dict, board)


def describe_error(exc: BaseException) -> str:
    """The root cause of a failed job, short enough for a table cell and a database column."""
    cause = getattr(exc, "cause", None) or exc
    text = "".join(traceback.format_exception_only(type(cause), cause)).strip()
    return text[-2000:]
