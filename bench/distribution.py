"""Distribution overhead: a job's training images/s through the orchestrator against a bare loop.

Measured path: scheduler.submit, i.e. the Ray task run_as_task with a ProgressBoard, running
workers.train.train_classifier (2 epochs; the second epoch's images/s is the steady state).
Baseline: in the driver, the same model, synthetic data, transform, DataLoader, batch and thread
count, trained by a plain loop for the same two epochs, the second one timed the same way.
Start-up (Ray dispatch, worker process, imports, result hand-back: driver wall time less the
job's own wall_s) is reported on its own.
"""
from __future__ import annotations

import itertools
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from bench.environment import workload
from bench.harness import Figure, Settings, Target, compared, interleave
from bench.loops import job_spec, plain_epoch, plain_model
from bench.ray_session import local_ray
from workers.datasets import load_dataset
from workers.jobs import JobSpec
from workers.recipes import Recipe
from workers.train import Transformed, train_transform

TARGET = Target(">=", 0.97)
EPOCHS = 2  # the first warms up (allocator, oneDNN primitives); the second is the steady state


@dataclass(frozen=True)
class Case:
    arch: str
    size: int
    batch: int
    steps: int


def cases(settings: Settings) -> list[Case]:
    return settings.pick([Case("resnet18", 64, 32, 4), Case("resnet50", 64, 16, 3)], [Case("resnet18", 64, 16, 3)])


class Paths:
    """The two ways of training one case; the Ray path also keeps each run's start-up."""

    def __init__(self, case: Case, settings: Settings):
        import ray

        from orchestrator import scheduler

        self.case, self.settings, self.ray, self.scheduler = case, settings, ray, scheduler
        self.board = scheduler.ProgressBoard.remote()
        self.folder = settings.workdir / "distribution"
        self.counter = itertools.count()
        self.startups: list[float] = []
        spec = self.spec(self.folder / "probe")
        self.recipe = Recipe().override(spec.recipe)
        self.train_set = Transformed(load_dataset(spec.dataset, spec.dataset_options).train,
                                     train_transform(case.size, self.recipe))

    def spec(self, storage: Path) -> JobSpec:
        c = self.case
        # fp32 in the default layout, as the bare loop: this ratio is the cost of distribution alone; what
        # bf16 and channels_last gain (on by default where they pay) is the training benchmark's figure.
        return job_spec(c.arch, c.size, c.batch, c.steps, EPOCHS, storage, self.settings.threads,
                        recipe={"amp": False, "channels_last": False})

    def orchestrated(self) -> float:
        storage = self.folder / f"{self.case.arch}-{next(self.counter)}"  # fresh: nothing to resume from
        start = time.perf_counter()
        result = self.ray.get(self.scheduler.submit(self.spec(storage), self.board))
        self.startups.append(time.perf_counter() - start - result["wall_s"])
        shutil.rmtree(storage, ignore_errors=True)
        return result["history"][-1]["images_per_s"]

    def bare(self) -> float:
        c, recipe = self.case, self.recipe
        model, optimizer = plain_model(c.arch, c.size)
        # As train_classifier builds its loader, so both paths pay the same data pipeline.
        loader = DataLoader(self.train_set, c.batch, shuffle=True, drop_last=len(self.train_set) > c.batch,
                            num_workers=recipe.num_workers, generator=torch.Generator().manual_seed(0))
        for _ in range(EPOCHS - 1):
            plain_epoch(model, optimizer, loader, c.steps)
        return plain_epoch(model, optimizer, loader, c.steps)


def measure(case: Case, settings: Settings, first: bool) -> list[Figure]:
    """The case's figures; `first`: the session's first tasks, whose warm-up starts Ray's worker processes."""
    paths = Paths(case, settings)
    samples = interleave({"bare loop": paths.bare, "Ray task": paths.orchestrated}, settings.repeats, settings.warmup)
    work = workload(("torch", "ray"), model=case.arch, input=case.size, batch=case.batch, steps_per_epoch=case.steps,
                    epochs=EPOCHS, threads=settings.threads, device="cpu", data="synthetic via DataLoader")
    cold, warm = paths.startups[:settings.warmup], paths.startups[settings.warmup:]
    figures = [compared("distribution", "steady-state train images/s, Ray task vs bare loop", work, "img/s", samples,
                        "Ray task", "bare loop", TARGET)]
    figures.append(Figure("distribution", "task start-up, warm worker (wall - job wall_s)", work, "s", warm))
    if cold and first:
        figures.append(Figure("distribution", "task start-up, first task (cold worker)", work, "s", cold[:1],
                              note="includes starting the worker process and importing torch"))
    return figures


def run(settings: Settings) -> list[Figure]:
    with local_ray(settings.threads) as ray_start:
        figures = [figure for i, case in enumerate(cases(settings)) for figure in measure(case, settings, i == 0)]
    figures.append(Figure("distribution", "local Ray start (ray.init, as scheduler.connect)",
                          workload(("ray",), num_cpus=settings.threads), "s", [ray_start] if ray_start else []))
    return figures
