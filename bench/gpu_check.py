"""The GPU check (`python -m bench --only gpu`, or bench/gpu_check.sh): ResNet-50 at 224 px in bf16 autocast
with channels_last, a fixed number of steps, three ways on one CUDA GPU:

- through the orchestrator: one job submitted as `convbench run` submits it (orchestrator.scheduler.submit, a
  Ray task on a GPU, workers.train.train_classifier on synthetic 224 px images through its DataLoader);
- a bare loop over the same DataLoader (same transform, batch, loader processes): the orchestrator's figure
  over this one is the cost of everything convbench adds;
- a bare loop over batches already on the GPU: what the GPU does when nothing waits on data, the ceiling.

Each prints images/s and its model FLOPs utilisation (MFU): 3 x forward FLOPs per image (workers.zoo.count_flops,
2 FLOPs per multiply-accumulate) x images/s over the GPU's dense bf16 peak, from PEAKS by device name. On a
machine without CUDA it is skipped with a message, and `python -m bench` still exits 0. Sized to finish in well
under 5 minutes on a data-centre GPU, start of Ray and synthesis of the images included.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.harness import Figure, Settings, Skip, Target

ARCH, SIZE, BATCH = "resnet50", 224, 128
STEPS, EPOCHS = 20, 3  # per epoch; the orchestrated job's last epoch is the figure, the first ones warm up
BARE_WARMUP, BARE_STEPS = 10, 30
TRAIN_FLOPS_PER_FORWARD = 3  # backward ~ 2x forward
TARGET = Target(">=", 0.9)  # the orchestrated job over the bare loop on the same loader

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity), from the vendors' data sheets, matched in order against
# torch.cuda.get_device_name(): the more specific names first ("H100 PCIe" before "H100", "L40S" before "L4").
PEAKS: tuple[tuple[str, float], ...] = (
    (r"GH200", 989.0),
    (r"H200", 989.0),
    (r"H100.*(PCIe)", 756.0),
    (r"H100.*NVL", 835.0),
    (r"H100", 989.0),  # SXM (HBM3)
    (r"H800", 989.0),
    (r"A100", 312.0),
    (r"A800", 312.0),
    (r"L40S", 362.0),
    (r"L40", 181.0),
    (r"L4\b", 121.0),
    (r"A10G", 70.0),
    (r"A10\b", 125.0),
    (r"RTX 4090", 165.0),
)
UNKNOWN = "unknown GPU: no bf16 peak on file (bench/gpu_check.py PEAKS), MFU not computed"


def bf16_peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU by its CUDA name; None for a GPU not in PEAKS."""
    for pattern, peak in PEAKS:
        if re.search(pattern, device_name):
            return peak
    return None


def mfu(images_per_s: float, forward_flops: float, peak_tflops: float | None) -> float | None:
    """Model FLOPs utilisation: training FLOP/s (3 x forward FLOPs per image) over the peak; None without one."""
    if peak_tflops is None or peak_tflops <= 0:
        return None
    return images_per_s * TRAIN_FLOPS_PER_FORWARD * forward_flops / (peak_tflops * 1e12)


def cuda_or_skip() -> Any:
    """torch, once a CUDA GPU answers; else Skip with a message that says what was looked for."""
    import torch

    if not torch.cuda.is_available():
        raise Skip(f"no CUDA GPU here (torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}): "
                   "the GPU check needs one; nothing was run")
    return torch


@dataclass
class Measured:
    name: str
    images_per_s: float
    seconds: float


def job(storage: Path, threads: int) -> Any:
    """The check's job, as a suite would make it: bf16 and channels_last are the recipe's defaults on a GPU."""
    from bench.loops import job_spec
    from workers.jobs import Resources

    loaders = max(1, min(8, threads - 2))  # ImageNet-style 224 px crops need loader processes to feed a GPU
    spec = job_spec(ARCH, SIZE, BATCH, STEPS, EPOCHS, storage, threads, recipe={"num_workers": loaders})
    return replace(spec, resources=Resources(cpus=threads, gpus=1))


def orchestrated(spec: Any, threads: int) -> tuple[Measured, dict[str, Any]]:
    import ray

    from bench.ray_session import local_ray
    from orchestrator import scheduler

    start = time.perf_counter()
    with local_ray(threads):
        board = scheduler.ProgressBoard.remote()  # type: ignore[attr-defined]  # a Ray actor class
        result = ray.get(scheduler.submit(spec, board))
    measured = Measured("orchestrator (Ray task, train_classifier)", result["history"][-1]["images_per_s"],
                        time.perf_counter() - start)
    return measured, result


def bare_loader(spec: Any) -> Measured:
    """A textbook bf16 + channels_last loop over the DataLoader train_classifier builds, the last epoch timed."""
    import torch
    from torch.utils.data import DataLoader

    from bench.loops import plain_model
    from workers.datasets import load_dataset
    from workers.recipes import Recipe
    from workers.train import Transformed, train_transform

    recipe = Recipe().override(spec.recipe)
    train = Transformed(load_dataset(spec.dataset, spec.dataset_options).train, train_transform(SIZE, recipe))
    loader = DataLoader(train, BATCH, shuffle=True, drop_last=True, num_workers=recipe.num_workers, pin_memory=True,
                        persistent_workers=recipe.num_workers > 0, generator=torch.Generator().manual_seed(0))
    model, optimizer = plain_model(ARCH, SIZE)
    model = model.cuda().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    start, rate = time.perf_counter(), 0.0
    for _ in range(EPOCHS):
        seen, epoch_start = 0, time.perf_counter()
        for i, (images, targets) in enumerate(loader):
            if i >= STEPS:
                break
            images = images.cuda(non_blocking=True).contiguous(memory_format=torch.channels_last)
            step(model, optimizer, images, targets.cuda(non_blocking=True))
            seen += len(targets)
        torch.cuda.synchronize()
        rate = seen / (time.perf_counter() - epoch_start)
    return Measured("bare loop, same DataLoader", rate, time.perf_counter() - start)


def step(model: Any, optimizer: Any, images: Any, targets: Any) -> None:
    import torch

    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(images), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def bare_on_device() -> Measured:
    """The same step on batches already on the GPU: no loader, no host work but the launches."""
    import torch

    from bench.loops import plain_model

    model, _ = plain_model(ARCH, SIZE)
    model = model.cuda().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    images = torch.randn(BATCH, 3, SIZE, SIZE, device="cuda").contiguous(memory_format=torch.channels_last)
    targets = torch.randint(10, (BATCH,), device="cuda")
    start = time.perf_counter()
    for _ in range(BARE_WARMUP):
        step(model, optimizer, images, targets)
    torch.cuda.synchronize()
    timed = time.perf_counter()
    for _ in range(BARE_STEPS):
        step(model, optimizer, images, targets)
    torch.cuda.synchronize()
    rate = BARE_STEPS * BATCH / (time.perf_counter() - timed)
    return Measured("bare loop, batches on the GPU", rate, time.perf_counter() - start)


def report(rows: list[Measured], forward_flops: float, device: str, peak: float | None) -> str:
    """The check's table: images/s, ratio to the bare loop on the same loader, MFU."""
    reference = next((r.images_per_s for r in rows if r.name.startswith("bare loop, same")), None)
    lines = [f"GPU check: {ARCH} at {SIZE} px, batch {BATCH}, bf16 autocast, channels_last, on {device}",
             (f"bf16 dense peak: {f'{peak:g} TFLOP/s' if peak else UNKNOWN}; "
              f"training FLOPs per image {TRAIN_FLOPS_PER_FORWARD} x {forward_flops / 1e9:.2f} GFLOP forward"),
             f"{'path':<45} {'img/s':>9} {'vs bare':>8} {'MFU':>7} {'wall s':>7}"]
    for r in rows:
        ratio = f"{r.images_per_s / reference:.3f}" if reference else "-"
        util = mfu(r.images_per_s, forward_flops, peak)
        lines.append(f"{r.name:<45} {r.images_per_s:>9.1f} {ratio:>8} "
                     f"{'-' if util is None else f'{100 * util:.1f}%':>7} {r.seconds:>7.1f}")
    return "\n".join(lines)


def run(settings: Settings) -> list[Figure]:
    torch = cuda_or_skip()
    from bench.environment import workload
    from workers.zoo import count_flops, get_arch

    device = torch.cuda.get_device_name(0)
    peak = bf16_peak_tflops(device)
    forward = count_flops(get_arch(ARCH).build(10, SIZE, 0.0), SIZE)
    threads = max(settings.threads, os.cpu_count() or 1)
    spec = job(settings.workdir / "gpu-check", threads)
    ray_path, result = orchestrated(spec, threads)
    if result.get("metrics", {}).get("bf16_autocast") is not True:
        raise RuntimeError(f"the orchestrated job did not train in bf16 on the GPU: {result.get('hardware')}")
    loader_path, device_path = bare_loader(spec), bare_on_device()
    rows = [ray_path, loader_path, device_path]
    print(report(rows, forward, device, peak), flush=True)
    work = workload(("torch", "ray"), model=ARCH, input=SIZE, batch=BATCH, steps_per_epoch=STEPS, epochs=EPOCHS,
                    device=device, amp="bf16", channels_last=True, data="synthetic 224 px")
    figures = [Figure("gpu", "orchestrated / bare loop on the same DataLoader, train images/s", work, "img/s",
                      [ray_path.images_per_s], loader_path.name, [loader_path.images_per_s],
                      [ray_path.images_per_s / loader_path.images_per_s], TARGET)]
    for r in rows:
        util = mfu(r.images_per_s, forward, peak)
        figures.append(Figure("gpu", f"{r.name}: train images/s", work, "img/s", [r.images_per_s],
                              note=UNKNOWN if util is None else f"MFU {100 * util:.1f}% of {peak:g} TFLOP/s bf16"))
    return figures
