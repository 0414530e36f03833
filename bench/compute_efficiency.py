"""Compute efficiency: achieved FLOP/s of convbench's training step over the machine's fp32 GEMM rate.

A small roofline: the GEMM rate (torch.mm of large square fp32 matrices, same threads) is the
practical peak; a training step's FLOPs are taken as 3x the forward FLOPs of workers.zoo.count_flops
(backward ~ 2x forward), per image. GEMM and every architecture are interleaved, so each
architecture's ratio is against the peak measured in the same round.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import torch

from bench.environment import workload
from bench.harness import Figure, Settings, compared, interleave
from bench.loops import convbench_epoch, convbench_setup, random_batches
from workers.zoo import count_flops

GEMM = "fp32 GEMM"
TRAIN_FLOPS_PER_FORWARD = 3


def archs(settings: Settings) -> list[str]:
    return settings.pick(["alexnet", "vgg11", "googlenet", "resnet18", "resnet50", "densenet121"],
                         ["alexnet", "resnet18"])


def gemm_rate(n: int, seconds: float) -> Callable[[], float]:
    """GFLOP/s of back-to-back torch.mm calls for at least `seconds`: as long as a training sample, so that
    load from elsewhere on the machine weighs on both alike."""
    a, b = torch.randn(n, n), torch.randn(n, n)

    def sample() -> float:
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            torch.mm(a, b)
            calls += 1
        return calls * 2 * n ** 3 / elapsed / 1e9

    return sample


def training_rate(arch: str, size: int, batch: int, steps: int,
                  settings: Settings) -> tuple[Callable[[], float], float]:
    """A sampler of the step's GFLOP/s, and the forward FLOPs per image it counts with."""
    # fp32, against the fp32 peak: on a CPU with AMX convbench would train in bf16, whose peak is another roof
    setup = convbench_setup(arch, size, batch, settings.workdir, recipe={"amp": False, "channels_last": False})
    flops = count_flops(setup.bare, size)
    batches = random_batches(steps, batch, size)
    return (lambda: convbench_epoch(setup, batches) * TRAIN_FLOPS_PER_FORWARD * flops / 1e9), flops


def run(settings: Settings) -> list[Figure]:
    size, batch, steps, n = 64, settings.pick(16, 8), 2, settings.pick(2048, 1024)
    paths: dict[str, Callable[[], float]] = {GEMM: gemm_rate(n, settings.pick(3.0, 1.0))}
    forward: dict[str, float] = {}
    for arch in archs(settings):
        paths[arch], forward[arch] = training_rate(arch, size, batch, steps, settings)
    samples = interleave(paths, settings.repeats, settings.warmup)
    figures = [Figure("compute", "fp32 GEMM peak (torch.mm)", workload(matrix=f"{n}x{n}", threads=settings.threads,
                                                                       device="cpu"), "GFLOP/s", samples[GEMM])]
    for arch, flops in forward.items():
        work = workload(model=arch, input=size, batch=batch, steps=steps, threads=settings.threads, device="cpu",
                        fwd_gflop_per_image=round(flops / 1e9, 3))
        figures.append(compared("compute", f"{arch} training FLOP/s vs GEMM peak", work, "GFLOP/s", samples, arch, GEMM,
                                note="FLOPs = 3x forward (count_flops, eval mode: auxiliary heads not counted)"))
    return figures
