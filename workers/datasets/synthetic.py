"""`synthetic`: procedural shapes, deterministic by seed.

A class is a shape (and, past ten classes, a stripe frequency on it). Each image places
its shape at a random position, scale and tilt, in random foreground and background
colours of random contrast sign, over noise. Colour carries no
class information and the object can be anywhere, so a linear model on pixels does
poorly while a CNN, translation-equivariant by construction, learns it quickly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from workers.datasets.base import DatasetConfig, Splits, opaque_test_split

if TYPE_CHECKING:
    import torch

SHAPES = ("disk", "square", "triangle", "ring", "cross", "ell", "frame", "bar", "dots", "half-disk")


@dataclass(frozen=True)
class SyntheticConfig(DatasetConfig):
    num_classes: int = 10
    image_size: int = 32
    train_per_class: int = 200
    val_per_class: int = 50
    test_per_class: int = 50
    noise: float = 0.05

    def validate(self, where: str) -> None:
        for name in ("num_classes", "image_size", "train_per_class", "val_per_class", "test_per_class"):
            if getattr(self, name) < 1:
                raise ValueError(f"{where}.{name}: must be at least 1, got {getattr(self, name)}")
        if self.image_size < 8:
            raise ValueError(f"{where}.image_size: shapes need at least 8 px, got {self.image_size}")


def _shape_mask(shape: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Inside-ness of each image's shape at coordinates (x, y) in the shape's own frame."""
    import torch

    r = torch.sqrt(x * x + y * y)
    ax, ay = x.abs(), y.abs()
    box = torch.maximum(ax, ay)
    masks = torch.stack([
        r < 0.5,
        box < 0.42,
        (y > -0.35) & (y < 0.5 - 1.7 * ax),
        (r > 0.28) & (r < 0.5),
        ((ax < 0.14) & (ay < 0.5)) | ((ay < 0.14) & (ax < 0.5)),
        ((x > -0.45) & (x < -0.15) & (ay < 0.5)) | ((y > -0.5) & (y < -0.2) & (ax < 0.45)),
        (box < 0.48) & (box > 0.3),
        (ay < 0.13) & (ax < 0.62),
        ((x - 0.3) ** 2 + y * y < 0.04) | ((x + 0.3) ** 2 + y * y < 0.04),
        (r < 0.5) & (y > 0),
    ])  # S x N x H x W
    return masks.gather(0, shape.view(1, -1, 1, 1).expand(1, *x.shape)).squeeze(0)


def render(labels: torch.Tensor, size: int, generator: torch.Generator, noise: float = 0.08) -> torch.Tensor:
    """Images (uint8, N x 3 x size x size) of the given classes."""
    import torch

    n = len(labels)
    u = lambda *shape: torch.rand(*shape, generator=generator)
    grid = torch.linspace(-1, 1, size)
    gy, gx = torch.meshgrid(grid, grid, indexing="ij")
    scale = 0.75 + 0.25 * u(n)
    angle = (u(n) - 0.5) * torch.pi / 3  # up to 30 degrees: a rotated square must not become a diamond
    cx, cy = (u(n) - 0.5) * (1.6 - 1.1 * scale), (u(n) - 0.5) * (1.6 - 1.1 * scale)
    dx = (gx[None] - cx[:, None, None]) / scale[:, None, None]
    dy = (gy[None] - cy[:, None, None]) / scale[:, None, None]
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    x, y = cos * dx + sin * dy, -sin * dx + cos * dy

    shape = labels % len(SHAPES)
    mask = _shape_mask(shape, x, y).float()
    stripes = labels // len(SHAPES)  # 0: solid; k: stripes of frequency 3k across the shape
    striped = torch.cos(torch.pi * 3 * stripes[:, None, None] * x) > 0
    mask = torch.where(stripes[:, None, None] > 0, mask * striped.float(), mask)

    # The object is much brighter or much darker than its background, at random, so its outline is
    # always clear while the sign of the contrast (and a colour tint) defeats a linear template.
    sign = torch.where(u(n, 1, 1, 1) < 0.5, -1.0, 1.0)
    level = 0.5 - sign * (0.15 + 0.3 * u(n, 1, 1, 1))
    background = level + 0.1 * (u(n, 3, 1, 1) - 0.5)
    foreground = background + sign * (0.4 + 0.2 * u(n, 1, 1, 1)) + 0.1 * (u(n, 3, 1, 1) - 0.5)
    image = background + mask[:, None] * (foreground - background)
    image = image + noise * torch.randn(image.shape, generator=generator)
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def torch_randperm(n: int, seed: int) -> np.ndarray:
    """torch.randperm(n) on a CPU torch.Generator seeded with `seed`, computed without torch.

    The challenge server needs only the test labels' order, and importing torch for it costs
    seconds and most of a gigabyte. torch's CPU generator is MT19937 seeded as numpy's legacy
    RandomState seeds it, and for n < 2**32 / 20 randperm is this Fisher-Yates on its 32-bit
    draws (aten's randperm_cpu). `_split` checks that the two agree on every load.
    """
    key = np.random.RandomState(seed & 0xFFFFFFFF).get_state()[1]
    bits = np.random.MT19937()
    bits.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": 624}}
    draws = bits.random_raw(max(n - 1, 0)).tolist()
    perm = list(range(n))
    for i, draw in enumerate(draws):
        j = i + draw % (n - i)
        perm[i], perm[j] = perm[j], perm[i]
    return np.asarray(perm, dtype=np.int64)


def _labels(config: SyntheticConfig, per_class: int, stream: int) -> np.ndarray:
    """A split's labels in image order, without torch: what `_split` draws first from its generator."""
    labels = np.repeat(np.arange(config.num_classes), per_class)
    return labels[torch_randperm(len(labels), config.seed * 1000 + stream)]


def _split(config: SyntheticConfig, per_class: int, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    generator = torch.Generator().manual_seed(config.seed * 1000 + stream)
    labels = torch.arange(config.num_classes).repeat_interleave(per_class)
    labels = labels[torch.randperm(len(labels), generator=generator)]
    # The server's held labels come from _labels; a torch whose randperm changed would score every
    # submission against the wrong labels, so fail loudly here instead.
    if not np.array_equal(labels.numpy(), _labels(config, per_class, stream)):
        raise RuntimeError(f"torch {torch.__version__}'s randperm no longer matches synthetic.torch_randperm: "
                           f"update it, or the challenge server's held labels will not match the images")
    return render(labels, config.image_size, generator, config.noise), labels


def class_names(config: SyntheticConfig) -> list[str]:
    return [SHAPES[c % len(SHAPES)] + (f"-stripes{c // len(SHAPES)}" if c >= len(SHAPES) else "")
            for c in range(config.num_classes)]


def load(config: SyntheticConfig) -> Splits:
    import torch

    from workers.datasets.images import TensorImages

    train_x, train_y = _split(config, config.train_per_class, 1)
    val_x, val_y = _split(config, config.val_per_class, 2)
    test_x, _ = _split(config, config.test_per_class, 3)
    order, ids = opaque_test_split(len(test_x), config.seed)
    return Splits(
        train=TensorImages(train_x, train_y.tolist()), val=TensorImages(val_x, val_y.tolist()),
        test=TensorImages(test_x[torch.as_tensor(order)], ids), num_classes=config.num_classes,
        class_names=class_names(config), image_size=config.image_size)


def test_labels(config: SyntheticConfig) -> dict[str, int]:
    """The held labels of the test split: for the challenge server only (no torch, no rendering)."""
    labels = _labels(config, config.test_per_class, 3)
    order, ids = opaque_test_split(len(labels), config.seed)
    return dict(zip(ids, labels[order].tolist()))


def train_size(config: SyntheticConfig) -> int:
    return config.num_classes * config.train_per_class
