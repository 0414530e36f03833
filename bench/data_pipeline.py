"""Data pipeline: the ImageNet-layout loader's images/s against what ResNet-18 training consumes.

A small ILSVRC-style tree (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG) is written once to a temp
folder; the loader is convbench's: workers.datasets' `imagenet` FileImages, the train transform,
a DataLoader with the recipe's num_workers (0 by default: loading shares the training process).
Decode-only images/s is measured alongside, to tell decoding from transforming.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision.io import encode_jpeg

from bench.environment import workload
from bench.harness import Figure, Settings, Target, compared, interleave
from bench.loops import convbench_epoch, convbench_setup, random_batches
from workers.datasets import load_dataset
from workers.datasets.synthetic import render
from workers.recipes import Recipe
from workers.train import Transformed, train_transform
from workers.zoo import get_arch

TARGET = Target(">=", 2.0)
LOADER, DECODE, MODEL = "JPEG loader + train transform", "JPEG decode only", "ResNet-18 training"


@dataclass(frozen=True)
class Case:
    width: int  # the JPEGs' size: ImageNet's typical 500 x 375, or half of it under --quick
    height: int
    size: int  # the training input
    classes: int
    per_class: int
    loader_batch: int
    model_batch: int
    model_steps: int


def case(settings: Settings) -> Case:
    return settings.pick(Case(500, 375, 224, 4, 20, 32, 16, 2), Case(250, 188, 112, 4, 10, 16, 16, 1))


def write_tree(root: Path, c: Case) -> int:
    """ILSVRC-style folders of JPEGs (quality 90) of synthetic shapes; returns the number of training images."""
    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", c.per_class), ("val", 2)):
        for k in range(c.classes):
            folder = root / split / f"n{k:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            images = render(torch.full((count,), k), c.height, generator)
            images = torch.nn.functional.interpolate(images.float(), size=(c.height, c.width), mode="bilinear")
            for i, image in enumerate(images.round().clamp(0, 255).to(torch.uint8)):
                (folder / f"{split}_{k}_{i:04d}.JPEG").write_bytes(encode_jpeg(image, quality=90).numpy().tobytes())
    return c.classes * c.per_class


def images_per_second(loader: DataLoader) -> float:
    seen, start = 0, time.perf_counter()
    for images, _ in loader:
        seen += len(images)
    return seen / (time.perf_counter() - start)


def run(settings: Settings) -> list[Figure]:
    c = case(settings)
    root = settings.workdir / "imagenet"
    write_tree(root, c)
    splits = load_dataset("imagenet", {"root": str(root), "test_per_class": 1})
    recipe = get_arch("resnet18").recipe
    loader = DataLoader(Transformed(splits.train, train_transform(c.size, recipe)), c.loader_batch, shuffle=True,
                        drop_last=True, num_workers=recipe.num_workers, generator=torch.Generator().manual_seed(0))
    # Decoded images differ in size only with the source; these all match, so the default collate stacks them.
    decode = DataLoader(splits.train, c.loader_batch, num_workers=recipe.num_workers)
    setup = convbench_setup("resnet18", c.size, c.model_batch, settings.workdir)
    batches = random_batches(c.model_steps, c.model_batch, c.size)
    samples = interleave({MODEL: lambda: convbench_epoch(setup, batches), LOADER: lambda: images_per_second(loader),
                          DECODE: lambda: images_per_second(decode)}, settings.repeats, settings.warmup)
    work = workload(("torch", "torchvision"), jpeg=f"{c.width}x{c.height} q90", images=len(splits.train),
                    input=c.size, loader_batch=c.loader_batch, num_workers=Recipe().num_workers,
                    model="resnet18", model_batch=c.model_batch, threads=settings.threads, device="cpu")
    return [compared("data", "loader images/s vs ResNet-18 training images/s", work, "img/s", samples, LOADER, MODEL,
                     TARGET),
            compared("data", "decode-only images/s vs ResNet-18 training images/s", work, "img/s", samples, DECODE,
                     MODEL, note="torchvision.io.decode_image alone: the share of the loader's time spent decoding")]
