"""Scheduling: many tiny jobs through orchestrator.campaign.run_campaign on a local Ray.

Each repetition runs a fresh campaign (temp SQLite, fresh storage: nothing to skip or resume) of
N one-step ResNet-18 jobs at 32 px, one CPU each, so `concurrency` = Ray CPUs / 1 run at once.
Per-job fixed cost = (wall x concurrency - sum of the jobs' own wall_s) / N: the slot-seconds a
job holds beyond its own work (scheduling, result hand-back, database writes, the driver's
polling). The cores' busy fraction is this process tree's CPU time over wall x cores.
The comparison is one bare TorchTrainer.fit() of the same job: its start-up is fit's wall less
the job's own wall_s. Ray's own start is measured once, outside both.
"""
from __future__ import annotations

import io
import itertools
import shutil
import time
from pathlib import Path
from typing import Any

from bench.cpu_usage import BusyMeter
from bench.environment import workload
from bench.harness import Figure, Settings, Target, compared, interleave
from bench.ray_session import local_ray
from workers.jobs import JobSpec

CPUS_PER_JOB = 1
CAMPAIGN, TRAINER = "campaign, fixed cost per job", "TorchTrainer.fit start-up"
FIXED_TARGET = Target("<=", 2.0, on="value")
BUSY_TARGET = Target(">=", 0.8, on="value")


def tiny_suite(jobs: int, storage: Path) -> Any:
    from orchestrator.suite import parse_suite

    return parse_suite({
        "name": "bench-tiny", "storage": str(storage), "seeds": list(range(jobs)), "architectures": ["resnet18"],
        "datasets": [{"name": "synthetic", "num_classes": 4, "image_size": 32, "train_per_class": 2,
                      "val_per_class": 1, "test_per_class": 1}],
        "recipe": {"epochs": 1, "batch_size": 8, "max_steps_per_epoch": 1},
        "resources": {"cpus": CPUS_PER_JOB, "gpus": 0, "workers": 1},
    }, "bench-tiny")


class Campaigns:
    """Runs the campaign and the TorchTrainer job, keeping what each run measured besides its sample."""

    def __init__(self, settings: Settings, jobs: int):
        self.settings, self.jobs = settings, jobs
        self.concurrency = max(1, settings.threads // CPUS_PER_JOB)
        self.folder = settings.workdir / "scheduling"
        self.counter = itertools.count()
        self.campaigns: list[dict[str, float]] = []
        self.trainers: list[dict[str, float]] = []

    def campaign(self) -> float:
        from sqlalchemy import select

        from db.engine import session_scope
        from db.schema import Run
        from orchestrator.campaign import run_campaign
        from orchestrator.store import Store

        here = self.folder / f"campaign-{next(self.counter)}"
        url = f"sqlite:///{here / 'runs.db'}"
        here.mkdir(parents=True)
        suite = tiny_suite(self.jobs, here / "runs")
        store = Store(url, here / "spool")
        store.prepare()  # the schema migration is set-up, not a per-job cost
        with BusyMeter(self.settings.threads) as meter:
            start = time.perf_counter()
            states = run_campaign(suite, store, num_cpus=self.settings.threads, out=io.StringIO())
            wall = time.perf_counter() - start
        with session_scope(url) as s:
            compute = sum(w or 0.0 for w in s.scalars(select(Run.wall_s)))
        failed = sum(state != "done" for state in states.values())
        if failed:
            raise RuntimeError(f"{failed} of {self.jobs} tiny jobs failed; see {here}")
        fixed = (wall * self.concurrency - compute) / self.jobs
        self.campaigns.append({"wall": wall, "compute": compute, "fixed": fixed, "tree": meter.result.tree,
                               "machine": meter.result.machine, "occupancy": compute / (wall * self.concurrency)})
        shutil.rmtree(here, ignore_errors=True)
        return fixed

    def trainer(self) -> float:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        from orchestrator import scheduler

        here = self.folder / f"trainer-{next(self.counter)}"
        spec = tiny_suite(1, here / "runs").jobs()[0]
        spec_dict = {**spec.to_dict(), "storage": str(here / "runs")}
        trainer = TorchTrainer(
            scheduler._train_loop_per_worker,  # the orchestrator's own per-worker loop for TorchTrainer jobs
            train_loop_config={"spec": spec_dict, "board": scheduler.ProgressBoard.remote()},
            torch_config=TorchConfig(backend="gloo"),
            scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": CPUS_PER_JOB}),
            run_config=RunConfig(name=here.name, storage_path=str(here / "ray_train")))
        start = time.perf_counter()
        trainer.fit()
        wall = time.perf_counter() - start
        result = scheduler.saved_result(JobSpec.from_dict(spec_dict))
        if result is None:
            raise RuntimeError(f"TorchTrainer run left no result in {here}")
        self.trainers.append({"wall": wall, "compute": result["wall_s"]})
        shutil.rmtree(here, ignore_errors=True)
        return wall - result["wall_s"]


def figure(name: str, work: dict[str, Any], unit: str, values: list[float], target: Target | None = None,
           note: str = "") -> Figure:
    return Figure("scheduling", name, work, unit, values, target=target, note=note)


def run(settings: Settings) -> list[Figure]:
    jobs = settings.pick(40, 8)
    runs = Campaigns(settings, jobs)
    with local_ray(settings.threads) as ray_start:
        samples = interleave({CAMPAIGN: runs.campaign, TRAINER: runs.trainer}, settings.repeats, settings.warmup)
    measured = runs.campaigns[-settings.repeats:]
    trainers = runs.trainers[-settings.repeats:]
    work = workload(("torch", "ray", "sqlalchemy"), jobs=jobs, model="resnet18", input=32, batch=8, steps=1,
                    cpus_per_job=CPUS_PER_JOB, concurrency=runs.concurrency, ray_cpus=settings.threads, db="sqlite")
    one = {**work, "jobs": 1}
    return [
        compared("scheduling", "per-job fixed cost (wall x concurrency - sum compute) / jobs, vs TorchTrainer start-up",
                 work, "s", samples, CAMPAIGN, TRAINER, FIXED_TARGET),
        figure("campaign wall", work, "s", [m["wall"] for m in measured]),
        figure("sum of the jobs' own wall_s", work, "s", [m["compute"] for m in measured]),
        figure("cores busy, this process tree", work, "fraction", [m["tree"] for m in measured], BUSY_TARGET),
        figure("cores busy, whole machine (/proc/stat)", work, "fraction", [m["machine"] for m in measured],
               note="includes other users' processes"),
        figure("slot occupancy: sum compute / (wall x concurrency)", work, "fraction",
               [m["occupancy"] for m in measured]),
        figure("TorchTrainer.fit wall, one tiny job", one, "s", [t["wall"] for t in trainers]),
        figure("local Ray start (ray.init, as scheduler.connect)", workload(("ray",), num_cpus=settings.threads), "s",
               [ray_start] if ray_start else []),
    ]
