"""Training steps the benchmarks compare: a bare PyTorch loop, and convbench's own loop on fixed batches."""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workers.context import RunContext
from workers.jobs import JobSpec, Resources
from workers.train import MEAN, STD, Setup, build, train_one_epoch
from workers.zoo import get_arch

NUM_CLASSES = 10
Batch = tuple[torch.Tensor, torch.Tensor]


def synthetic_options(size: int, train_images: int, num_classes: int = NUM_CLASSES) -> dict[str, Any]:
    """A synthetic dataset with enough training images for the steps and almost nothing else to evaluate."""
    return {"num_classes": num_classes, "image_size": size, "train_per_class": -(-train_images // num_classes),
            "val_per_class": 1, "test_per_class": 1}


def job_spec(arch: str, size: int, batch: int, steps: int, epochs: int, storage: Path, threads: int,
             recipe: dict[str, Any] | None = None, seed: int = 0) -> JobSpec:
    """A classification job on synthetic data with the architecture's recipe, cut to `steps` steps per epoch."""
    changes = {"epochs": epochs, "batch_size": batch, "max_steps_per_epoch": steps, **(recipe or {})}
    return JobSpec(suite="bench", task="classification", arch=arch, dataset="synthetic",
                   dataset_options=synthetic_options(size, steps * batch),
                   recipe=get_arch(arch).recipe.override(changes).to_dict(),
                   seed=seed, input_size=size, resources=Resources(cpus=threads), storage=str(storage))


def random_batches(count: int, batch: int, size: int, seed: int = 0, num_classes: int = NUM_CLASSES) -> list[Batch]:
    """Normalised images as the train transform leaves them; speed does not depend on their content."""
    generator = torch.Generator().manual_seed(seed)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return [((torch.rand(batch, 3, size, size, generator=generator) - mean) / std,
             torch.randint(num_classes, (batch,), generator=generator)) for _ in range(count)]


def plain_model(arch: str, size: int, num_classes: int = NUM_CLASSES,
                seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    recipe = get_arch(arch).recipe
    model = get_arch(arch).build(num_classes, size, recipe.dropout)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.scaled_lr(), momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)
    return model, optimizer


def plain_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, targets: torch.Tensor) -> None:
    """The textbook eager step: fp32, default memory format, no bookkeeping."""
    outputs = model(images)
    logits = outputs[0] if isinstance(outputs, tuple) else outputs  # GoogLeNet/Inception aux heads in train mode
    loss = nn.functional.cross_entropy(logits, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def plain_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: Iterable[Batch], steps: int) -> float:
    """Images/s over `steps` steps, timed as workers.train.train_one_epoch times its epoch (loading included)."""
    model.train()
    seen, start = 0, time.perf_counter()
    for i, (images, targets) in enumerate(loader):
        if i >= steps:
            break
        plain_step(model, optimizer, images, targets)
        seen += len(targets)
    return seen / (time.perf_counter() - start)


def convbench_setup(arch: str, size: int, batch: int, workdir: Path, recipe: dict[str, Any] | None = None) -> Setup:
    """What workers.train.build makes of a job on this machine (a CPU context): model, optimizer, flags."""
    spec = job_spec(arch, size, batch, steps=1, epochs=1, storage=workdir, threads=torch.get_num_threads(),
                    recipe=recipe)
    return build(spec, RunContext(job_id="bench", storage=workdir))


def with_channels_last(s: Setup) -> Setup:
    """The Setup with model and inputs in channels_last, as build() makes it where bf16 pays."""
    s.bare.to(memory_format=torch.channels_last)
    return replace(s, channels_last=True)


def with_bf16(s: Setup) -> Setup:
    """The Setup with bf16 autocast, as build() enables where it pays (a GPU, a CPU with AMX)."""
    return replace(s, autocast=True)


def convbench_epoch(s: Setup, batches: list[Batch], epoch: int = 0) -> float:
    """Images/s of workers.train.train_one_epoch over in-memory batches (no data pipeline)."""
    s = replace(s, recipe=s.recipe.override({"max_steps_per_epoch": len(batches)}))
    return train_one_epoch(s, batches, epoch, nn.CrossEntropyLoss())["images_per_s"]
