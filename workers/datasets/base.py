"""What every dataset yields: train/val with labels (class ids, or boxes), test with opaque ids only.

This module, and every dataset module's import, stays free of torch: the challenge server and
the orchestrator read dataset options, class names and held labels through the registry, and
importing torch and torchvision costs them seconds and most of a gigabyte. The torch Datasets
live in workers.datasets.images and are imported when a dataset is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class DatasetError(ValueError):
    """A dataset folder or file is missing or malformed; the message names what and where."""


class ImageDecodeError(DatasetError):
    """An image file that cannot be decoded: the message is "<path>: <problem>"."""

    def __init__(self, path: str | Path, problem: str | None = None):
        # One argument is a whole message: that is how pickling (Ray) and DataLoader workers rebuild it.
        super().__init__(str(path) if problem is None else f"{path}: {problem}")
        self.path, self.problem = str(path), problem

    def __reduce__(self):
        return type(self), (self.path, self.problem)


@dataclass(frozen=True)
class DatasetConfig:
    """Options shared by every dataset; each dataset adds its own fields."""

    seed: int = 0


@dataclass
class Splits:
    """A dataset ready to train on. `test` yields (image, image_id): its labels are not here."""

    train: Any  # torch Datasets
    val: Any
    test: Any
    num_classes: int
    class_names: list[str]
    image_size: int  # the images' own size (square side), before any resize
    info: dict[str, Any] = field(default_factory=dict)
    # What labelled val, when it came from files: {"kind", "path" (relative to the root), "sha256"}.
    label_source: dict[str, Any] | None = None


def opaque_test_split(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """A permutation of the test items and their public ids.

    The ids are numbered in the permuted order, so neither an id nor the order of the file
    says anything about the label (ARCHITECTURE.md invariant 1). The permutation is a function of the
    seed so that a worker and the server agree on which image is which.
    """
    order = np.random.default_rng([seed, 0x7E57]).permutation(n)
    return order, [f"test_{i:06d}" for i in range(n)]


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what}: folder {path} does not exist")
    return path


def box_rows(target: dict[str, Any]) -> list[list[float]]:
    """A detection dataset's target (tensors "boxes", "labels", "difficult") as the rows the scorers read:
    [x1, y1, x2, y2, class_id, difficult], what `test_labels` returns per image and the server stores."""
    return [[*box, int(label), int(difficult)] for box, label, difficult in
            zip(target["boxes"].tolist(), target["labels"].tolist(), target["difficult"].tolist())]
