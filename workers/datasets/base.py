"""What every classification dataset yields: train/val with labels, test with opaque ids only."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, read_file


class DatasetError(ValueError):
    """A dataset folder or file is missing or malformed; the message names what and where."""


@dataclass(frozen=True)
class DatasetConfig:
    """Options shared by every dataset; each dataset adds its own fields."""

    seed: int = 0


class TensorImages(Dataset):
    """Images held in memory as a uint8 tensor N x 3 x H x W, with labels or with ids."""

    def __init__(self, images: torch.Tensor, targets: Sequence[Any], transform: Callable | None = None):
        assert len(images) == len(targets)
        self.images, self.targets, self.transform = images, list(targets), transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        image = self.images[i]
        return (self.transform(image) if self.transform else image), self.targets[i]


class FileImages(Dataset):
    """Images read from disk (JPEG, PNG) and decoded to uint8 RGB tensors, with labels or with ids."""

    def __init__(self, paths: Sequence[Path], targets: Sequence[Any], transform: Callable | None = None):
        assert len(paths) == len(targets)
        self.paths, self.targets, self.transform = [str(p) for p in paths], list(targets), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        image = decode_image(read_file(self.paths[i]), mode=ImageReadMode.RGB)
        return (self.transform(image) if self.transform else image), self.targets[i]


@dataclass
class Splits:
    """A dataset ready to train on. `test` yields (image, image_id): its labels are not here."""

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    class_names: list[str]
    image_size: int  # the images' own size (square side), before any resize
    info: dict[str, Any] = field(default_factory=dict)


def opaque_test_split(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """A permutation of the test items and their public ids.

    The ids are numbered in the permuted order, so neither an id nor the order of the file
    says anything about the label (DESIGN invariant 1). The permutation is a function of the
    seed so that a worker and the server agree on which image is which.
    """
    order = np.random.default_rng([seed, 0x7E57]).permutation(n)
    return order, [f"test_{i:06d}" for i in range(n)]


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what}: folder {path} does not exist")
    return path
