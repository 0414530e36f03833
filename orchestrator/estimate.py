"""What a job will cost, before it runs: its training compute, and its training time on this machine.

Compute is the forward FLOPs of one image at the job's input size x the images trained on x 3: the
backward pass costs about twice the forward (the usual convention, as in Kaplan et al. 2020). Time
comes from this machine's own finished runs: the median training throughput (`runs.train_ips`) of
done runs of the same task, architecture, input size, worker count and hardware string.
Both are None where they cannot be known; the plan prints "-" for them.
"""
from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

from workers.datasets import DatasetError, dataset_class_names, dataset_train_size
from workers.jobs import JobSpec
from workers.zoo import ARCHS, count_flops

TRAINING_PASSES = 3  # forward + backward ~ 3 forward passes


@cache
def forward_flops(arch: str, size: int, num_classes: int) -> float:
    """FLOPs of one forward pass of one image (eval mode: auxiliary heads off), counted once per process."""
    import torch

    # Built on the meta device: shapes only, so no weights are allocated or initialised (VGG's 100 M
    # parameters take seconds to initialise) and the counter sees exactly the operations of a real build.
    with torch.device("meta"):
        model = ARCHS[arch].build(num_classes, size)
    return count_flops(model, size)


def epoch_images(train_size: int, recipe: dict[str, Any], workers: int = 1) -> int:
    """The images one epoch trains on, as workers.train's loader deals them: each rank takes its share
    in batches of batch_size / workers, drops a last partial batch (unless there is only one), and stops
    after max_steps_per_epoch steps when that is set."""
    per_rank = math.ceil(train_size / workers)
    batch = max(1, recipe["batch_size"] // workers)
    seen = per_rank if per_rank <= batch else per_rank // batch * batch
    if cap := recipe.get("max_steps_per_epoch"):
        seen = min(seen, cap * batch)
    return seen * workers


def classification_images(job: JobSpec) -> int | None:
    """Images trained on over the whole job; None when the dataset cannot say (or is not on this machine)."""
    try:
        size = dataset_train_size(job.dataset, job.dataset_options)
    except (DatasetError, OSError):
        return None  # the data lives on the workers, not here: no estimate rather than no plan
    if size is None:
        return None
    return epoch_images(size, job.recipe, job.resources.workers) * job.recipe["epochs"]


def classifier_flops(job: JobSpec) -> float | None:
    try:
        classes = len(dataset_class_names(job.dataset, job.dataset_options))
    except (DatasetError, OSError):
        return None
    return forward_flops(job.arch, job.input_size, classes)


@dataclass(frozen=True)
class TaskCost:
    images: Callable[[JobSpec], int | None]  # images trained on, all epochs
    flops_per_image: Callable[[JobSpec], float | None]  # one forward pass


# Detection is absent on purpose: R-CNN trains its backbone on region crops (a throughput in regions/s)
# and Faster R-CNN adds an RPN and heads the zoo does not count, so images x backbone FLOPs would be wrong.
TASK_COSTS: dict[str, TaskCost] = {
    "classification": TaskCost(classification_images, classifier_flops),
}


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@cache
def _hardware(device: str, threads: int) -> str | None:
    import torch

    from workers import provenance

    if device == "cuda":
        return provenance.hardware(torch.device("cuda")) if torch.cuda.is_available() else None
    # A CPU worker runs with as many threads as its job has CPUs (orchestrator.scheduler), and the string
    # names them: provenance's own function, with the thread count the worker would have.
    with _torch_threads(threads):
        return provenance.hardware(torch.device("cpu"))


def hardware_for(job: JobSpec) -> str | None:
    """The hardware string a worker on this machine would record for `job`; None: this machine has no such device."""
    return _hardware("cuda" if job.uses_gpu else "cpu", max(1, int(job.resources.cpus)))


ThroughputKey = tuple[str, str, int, int, str]  # task, arch, input size, workers, hardware


def throughput_key(task: str, arch: str, input_size: int, workers: int, hardware: str) -> ThroughputKey:
    return task, arch, input_size, workers, hardware


class Throughput:
    """The measured training throughput of finished runs, by what determines it."""

    def __init__(self, rows: Iterable[tuple[str, str, int | None, dict[str, Any] | None, str | None, float | None]]):
        """rows: (task, arch, input_size, config, hardware, train_ips) of done runs."""
        found: dict[ThroughputKey, list[float]] = defaultdict(list)
        for task, arch, size, config, hardware, ips in rows:
            if size is None or hardware is None or not ips or ips <= 0:
                continue
            # A DDP run's train_ips counts every rank, so the worker count is part of the key.
            workers = ((config or {}).get("resources") or {}).get("workers", 1)
            found[throughput_key(task, arch, size, workers, hardware)].append(ips)
        self.ips = {key: statistics.median(values) for key, values in found.items()}

    @classmethod
    def from_database(cls, url: str, archs: Iterable[str]) -> Throughput:
        from sqlalchemy import select

        from db.engine import session_scope
        from db.schema import Run

        with session_scope(url) as s:
            rows = s.execute(select(Run.task, Run.arch, Run.input_size, Run.config, Run.hardware, Run.train_ips)
                             .where(Run.state == "done", Run.train_ips.is_not(None), Run.arch.in_(set(archs))))
            return cls(tuple(row) for row in rows)

    def images_per_s(self, job: JobSpec) -> float | None:
        hardware = hardware_for(job)
        if hardware is None:
            return None
        return self.ips.get(throughput_key(job.task, job.arch, job.input_size, job.resources.workers, hardware))


@dataclass(frozen=True)
class Estimate:
    images: int | None  # trained on, all epochs
    flops: float | None  # training compute
    seconds: float | None  # training time on this machine


def estimate(job: JobSpec, throughput: Throughput) -> Estimate:
    cost = TASK_COSTS.get(job.task)
    if cost is None:
        return Estimate(None, None, None)
    images = cost.images(job)
    if images is None:
        return Estimate(None, None, None)
    per_image = cost.flops_per_image(job)
    ips = throughput.images_per_s(job)
    return Estimate(images, None if per_image is None else per_image * images * TRAINING_PASSES,
                    None if ips is None else images / ips)


FLOP_UNITS = ((1e18, "EFLOP"), (1e15, "PFLOP"), (1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP"))
TIME_UNITS = ((86400.0, "d"), (3600.0, "h"), (60.0, "min"), (1.0, "s"))


def _scaled(value: float, units: tuple[tuple[float, str], ...]) -> str:
    scale, unit = next(((s, u) for s, u in units if value >= s), units[-1])
    return f"{value / scale:.3g} {unit}"


def format_flops(flops: float | None) -> str:
    return "-" if flops is None else _scaled(flops, FLOP_UNITS)


def format_seconds(seconds: float | None) -> str:
    return "-" if seconds is None else _scaled(seconds, TIME_UNITS)


def legend(jobs: list[JobSpec]) -> str:
    """What the plan's columns mean, with the hardware strings its time estimates were looked up by."""
    machines = "; ".join(sorted({hardware_for(job) or "no GPU here" for job in jobs}))
    return "\n".join((
        "input px:  the training input size (square side)",
        (f"compute:   forward FLOPs of one image at input px x images trained on (train split per epoch, capped by "
         f"max_steps_per_epoch) x epochs x {TRAINING_PASSES} (forward + backward ~ {TRAINING_PASSES}x forward)"),
        ("est. time: those images / the median training images/s of done runs with the same arch, input px and "
         f"workers on this machine ({machines}); training only, without evaluation"),
        ("-:         not known: no such finished run, the data is not on this machine, or a detection job "
         "(its backbone trains on region crops)"),
    ))


def totals_line(jobs: list[JobSpec], to_run: list[JobSpec], costs: dict[str, Estimate]) -> str:
    """"N of M jobs left to run", with the total compute and, for the jobs left, the estimated time."""
    def flops(of: list[JobSpec]) -> str:
        known = [f for j in of if (f := costs[j.job_id].flops) is not None]
        unknown = f" (+{len(of) - len(known)} unknown)" if len(known) < len(of) else ""
        return f"{format_flops(sum(known)) if known else '-'}{unknown}"

    seconds = [t for j in to_run if (t := costs[j.job_id].seconds) is not None]
    return (f"{len(to_run)} of {len(jobs)} jobs left to run; compute: {flops(to_run)} left, {flops(jobs)} in all; "
            f"est. time left: {format_seconds(sum(seconds)) if seconds else '-'} "
            f"({len(to_run) - len(seconds)} of {len(to_run)} left without an estimate)")
