"""The torch Datasets the loaders return: images in memory, or files decoded on access."""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, read_file

from workers.datasets.base import ImageDecodeError
from workers.datasets.decoding import decode_problem

# torchvision 0.29 deprecates its decoders for TorchCodec's, which is neither pinned here nor needed for still
# images; its warning, once per decoded image, would bury every other line of a run's log.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision are deprecated",
                        category=DeprecationWarning)


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


def read_rgb(path: str | Path) -> torch.Tensor:
    """The image file at `path` as uint8 RGB, 3 x H x W; ImageDecodeError names the file and the problem."""
    try:
        return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    # The readers raise RuntimeError, ValueError or OSError depending on the problem and the version.
    except Exception as exc:  # noqa: BLE001 - whatever the decoder raises, the error must name the file
        raise ImageDecodeError(path, _describe(path, exc)) from None


def _describe(path: str | Path, exc: Exception) -> str:
    # Only on failure: the bytes again, to say whether the file is empty, cut short or no image at all.
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        return f"cannot read: {error.strerror or error}"
    return decode_problem(path, data, exc)


class FileImages(Dataset):
    """Images read from disk (JPEG, PNG) and decoded to uint8 RGB tensors, with labels or with ids."""

    def __init__(self, paths: Sequence[Path], targets: Sequence[Any], transform: Callable | None = None):
        assert len(paths) == len(targets)
        self.paths, self.targets, self.transform = [str(p) for p in paths], list(targets), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        image = read_rgb(self.paths[i])
        return (self.transform(image) if self.transform else image), self.targets[i]
