"""Training speed: convbench's training step against a plain eager fp32 PyTorch step, plus candidate defaults.

On a CPU with AMX (and on a GPU) workers.train.build turns on bf16 autocast and channels_last
(workers.context.bf16_pays); elsewhere on a CPU it runs the plain step plus its bookkeeping.
torch.compile is off by default. The candidates are what build() would do with one default changed,
run through the same train_one_epoch; where a candidate is already the default it measures the same.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.environment import workload
from bench.harness import Figure, Settings, Target, compared, interleave, timed
from bench.loops import (
    Batch,
    convbench_epoch,
    convbench_setup,
    plain_epoch,
    plain_model,
    random_batches,
    with_bf16,
    with_channels_last,
)
from workers.train import Setup

TARGET = Target(">=", 1.2)
BASELINE = "plain eager fp32"
DEFAULT = "convbench default"


@dataclass(frozen=True)
class Case:
    arch: str
    size: int
    batch: int
    steps: int
    compile: bool  # torch.compile costs minutes of compilation on 2 cores: full runs only, small models only


CANDIDATES: dict[str, Callable[[Setup], Setup]] = {
    "candidate: channels_last": with_channels_last,
    "candidate: bf16 autocast": with_bf16,
    "candidate: channels_last + bf16": lambda s: with_bf16(with_channels_last(s)),
}


def cases(settings: Settings) -> list[Case]:
    return settings.pick(
        [Case("resnet18", 64, 32, 3, compile=True), Case("resnet50", 64, 16, 2, compile=False)],
        [Case("resnet18", 64, 16, 2, compile=False)])


def measure(case: Case, settings: Settings) -> list[Figure]:
    batches: list[Batch] = random_batches(case.steps, case.batch, case.size)
    model, optimizer = plain_model(case.arch, case.size)
    setups = {DEFAULT: convbench_setup(case.arch, case.size, case.batch, settings.workdir)}
    for name, change in CANDIDATES.items():
        setups[name] = change(convbench_setup(case.arch, case.size, case.batch, settings.workdir))
    extra: list[Figure] = []
    if case.compile:
        compiled = convbench_setup(case.arch, case.size, case.batch, settings.workdir, recipe={"compile": True})
        # The first step compiles forward and backward; its time is a cost of its own, kept out of the rate.
        first = timed(lambda: convbench_epoch(compiled, batches[:1]))
        setups["candidate: torch.compile"] = compiled
        extra.append(Figure("training", "torch.compile first step (compilation)", work(case, settings), "s", [first],
                            note="one-off per process and model; Inductor's cache shortens it on later runs"))
    paths = {BASELINE: lambda: plain_epoch(model, optimizer, batches, case.steps)}
    paths.update({name: (lambda s=s: convbench_epoch(s, batches)) for name, s in setups.items()})
    samples = interleave(paths, settings.repeats, settings.warmup)
    figures = [compared("training", f"{name} images/s", work(case, settings), "img/s", samples, name, BASELINE, TARGET,
                        note="what convbench runs on CPU today" if name == DEFAULT else
                        "what build() would run with this default changed")
               for name in setups]
    return figures + extra


def work(case: Case, settings: Settings) -> dict[str, object]:
    return workload(model=case.arch, input=case.size, batch=case.batch, steps=case.steps, threads=settings.threads,
                    device="cpu", data="in-memory batches")


def run(settings: Settings) -> list[Figure]:
    return [figure for case in cases(settings) for figure in measure(case, settings)]
