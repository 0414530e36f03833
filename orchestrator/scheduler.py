"""Running jobs on Ray: each job asks for its resources and Ray queues what does not fit.

Two launchers share one training loop (workers.tasks.TASKS):

- `task`: a one-worker job is a Ray task. Ray keeps idle worker processes warm, so torch is
  imported once per process and a job's fixed cost is scheduling, not a worker-group start.
  Ray retries the task when its process dies; the loop resumes from the job's checkpoint.
- `trainer`: a multi-worker job runs through Ray Train's TorchTrainer (DDP over gloo on CPU,
  NCCL on GPU), restarted by FailureConfig, resuming from the same checkpoint folder.

Either way the result is also written to `result.json` in the job's folder, so a driver that
died after a job finished finds the result there instead of training again. Each start of a job
(a first run, a Ray retry, a TorchTrainer restart, a resumed re-run) is numbered in the folder's
`attempts` file, reported to the driver and recorded with the result.

The driver reads a job's files itself, at <its own storage root>/<the job's folder name>/log.txt (or
predictions.csv), never from a path that a result or a row carries: a file that resolves outside the root,
or is no regular file, is not read.

Ray's own messages on the driver (its loggers, its warnings, the raylet's "(raylet) ..." notices) would
tear the live table: `route_ray_output` sends them to <storage root>/_driver/ray.log instead.
"""
from __future__ import annotations

import json
import logging
import os
import stat
import traceback
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ray

from workers.jobs import JobSpec

RESULT_FILE = "result.json"
ATTEMPTS_FILE = "attempts"
LOG_FILE = "log.txt"
PREDICTIONS_FILE = "predictions.csv"  # what workers/train.py and workers/detection/loop.py write
RAY_LOG = Path("_driver") / "ray.log"  # under the storage root: Ray's own messages on the driver
LOG_CAP_BYTES = 200_000  # a log's tail in the database: its end says how the job finished


def connect(address: str | None = None, num_cpus: int | None = None) -> None:
    """Joins the cluster at `address` (or $RAY_ADDRESS); without either, starts a local one."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    env = {"env_vars": {"PYTHONWARNINGS": "ignore::UserWarning"}}
    # Warnings raised while Ray starts (some name the caller's line, not Ray's) go where Ray's log lines go
    # once `route_ray_output` has run; otherwise they show as usual.
    with warnings.catch_warnings(record=_routed is not None) as caught:
        if address:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        else:
            # "local": a new instance even when another Ray runs on this machine (plain init would join it).
            # worker_niceness 0: Ray starts its workers at nice 15 by default, and on a loaded machine they starve.
            ray.init(address="local", num_cpus=num_cpus, runtime_env=env, log_to_driver=False,
                     include_dashboard=False, _system_config={"worker_niceness": 0})
    for w in caught or ():
        _log_warning(w.message, w.category, w.filename, w.lineno, w.line)


_routed: logging.Handler | None = None  # the file handler Ray's messages go to, once routed
_RAY_DIR = os.path.dirname(ray.__file__) + os.sep
_RAY_MESSAGES = "ray.driver"  # the logger (under "ray") for what Ray would print, not log: warnings, raylet notices
_show_before = warnings.showwarning  # what shows a warning that is not Ray's


def _log_warning(message: Any, category: type[Warning], filename: str, lineno: int, line: str | None = None) -> None:
    text = warnings.formatwarning(message, category, filename, lineno, line).rstrip()
    logging.getLogger(_RAY_MESSAGES).warning("%s", text)


def _show_warning(message, category, filename, lineno, file=None, line=None):  # warnings.showwarning
    """warnings.showwarning: one raised inside Ray's package goes to the Ray log, any other shows as before."""
    if _routed is not None and file is None and str(filename).startswith(_RAY_DIR):
        _log_warning(message, category, filename, lineno, line)
        return
    _show_before(message, category, filename, lineno, file, line)


def _raylet_notice(data: dict[str, Any], ignore_prefix: bool = False) -> None:
    """Stands in for ray._private.worker.print_to_stdstream, which prints the raylet's notices ("A worker died
    ...", "Task ... will be retried") on the driver's stdout even without log_to_driver."""
    who = data.get("pid") or "ray"
    level = logging.ERROR if data.get("is_err") else logging.WARNING
    for line in data.get("lines") or ():
        logging.getLogger(_RAY_MESSAGES).log(level, "(%s) %s", who, line)


def route_ray_output(root: str | Path) -> Path:
    """Sends Ray's own messages on this driver to <root>/_driver/ray.log (appended); returns that path.

    Ray's loggers ("ray" and those under it) lose their terminal handlers for a file; warnings raised in Ray's
    package and the raylet's notices go to the same file. The driver's own output (the table, job failures,
    the summary, convbench's loggers) is untouched. Calling it again moves the file to a new root.
    """
    global _routed, _show_before
    path = Path(root).expanduser().resolve() / RAY_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s\t%(levelname)s %(name)s %(filename)s:%(lineno)s -- %(message)s"))
    ray_logger = logging.getLogger("ray")
    for old in list(ray_logger.handlers):
        if old is _routed or isinstance(old, logging.StreamHandler) and not isinstance(old, logging.FileHandler):
            ray_logger.removeHandler(old)
            if old is _routed:
                old.close()
    ray_logger.addHandler(handler)
    ray_logger.propagate = False
    for name, child in list(logging.root.manager.loggerDict.items()):
        if name.startswith("ray.") and isinstance(child, logging.Logger):
            terminal = [h for h in child.handlers
                        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
            for h in terminal:
                child.removeHandler(h)
            if terminal and not child.handlers:
                child.propagate = True  # to "ray", and so to the file
    _routed = handler
    if warnings.showwarning is not _show_warning:
        _show_before, warnings.showwarning = warnings.showwarning, _show_warning
    worker_module = ray._private.worker
    if hasattr(worker_module, "print_to_stdstream"):  # called by name from Ray's error listener thread
        worker_module.print_to_stdstream = _raylet_notice
    return path


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


def job_file(root: str | Path, spec: JobSpec, name: str) -> Path | None:
    """<root>/<the spec's folder name>/<name> with symlinks and `..` resolved; None if it is missing or resolves
    outside `root` (a link planted on a shared volume). The path is the driver's own, never one from a result."""
    base = Path(root).expanduser().resolve()
    try:
        path = (base / spec.folder.name / name).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return None
    return path if path.is_relative_to(base) and path != base else None


def _open_regular(path: Path, base: Path) -> int | None:
    """A read-only descriptor of the regular file at `path`, opened without following a link, and still inside
    `base` once open (a folder swapped for a link after `job_file` resolved it); None for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # NONBLOCK: a FIFO must not hang the driver
    except OSError:
        return None
    try:
        opened = Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        opened = path  # no /proc: the resolved path stands
    if not stat.S_ISREG(os.fstat(fd).st_mode) or not opened.is_relative_to(base):
        os.close(fd)
        return None
    return fd


def _read_tail(path: Path, cap: int, base: Path) -> str | None:
    """The last `cap` bytes of a regular file inside `base`, as text; None for anything else."""
    fd = _open_regular(path, base)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(fd).st_size
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
    path = job_file(root, spec, LOG_FILE)
    return None if path is None else _read_tail(path, cap, Path(root).expanduser().resolve())


def read_job_bytes(root: str | Path, spec: JobSpec, name: str, cap: int) -> bytes | None:
    """The whole of the job's file `name` (e.g. its predictions), by the log's rules: inside `root` once resolved,
    a regular file, at most `cap` bytes (a larger one is refused, not cut: half a file is a wrong file)."""
    path = job_file(root, spec, name)
    if path is None:
        return None
    fd = _open_regular(path, Path(root).expanduser().resolve())
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as f:
        if os.fstat(fd).st_size > cap:
            return None
        data = f.read(cap + 1)
    return data if len(data) <= cap else None  # grew while read


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
                             "started_at": datetime.now(UTC).isoformat()})
    ctx = (cls or RunContext)(job_id=spec.job_id, storage=spec.folder, rank=rank, world_size=world_size,
                              device=pick_device(spec.uses_gpu), on_report=lambda m: board.report.remote(m))
    ctx.log(f"attempt started: pid {os.getpid()} on node {node} as rank {rank} of {world_size}"
            + (f", attempt {attempt}" if rank == 0 else ""))
    return ctx, node, torch, attempt


def _finish(spec: JobSpec, result: dict[str, Any], node_id: str, launcher: str, attempt: int) -> dict[str, Any]:
    # finished_at: when the job finished here, which the database keeps even if the row is written later.
    result = {"finished_at": datetime.now(UTC).isoformat(), **result,
              "node": f"{result.get('node') or ''}/{node_id[:12]}", "launcher": launcher, "attempts": attempt}
    _save_result(spec, result)
    return result


# A dead worker process is retried (max_retries, set per job); an exception in the job is its
# result, reported as the failure, since running the same code again would fail the same way.
@ray.remote(max_retries=2, retry_exceptions=False)
def run_as_task(spec_dict: dict[str, Any], board: Any) -> dict[str, Any]:
    from workers.tasks import TASKS

    spec = JobSpec.from_dict(spec_dict)
    ctx, node_id, torch, attempt = _context(spec, board)
    torch.set_num_threads(max(1, int(spec.resources.cpus)))
    return _finish(spec, TASKS[spec.task](spec, ctx), node_id, "task", attempt)


def _train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train

    from workers.context import RayTrainContext
    from workers.tasks import TASKS

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
