"""`synthetic-scenes`: procedural detection images, deterministic by seed.

Each image holds one to `max_objects` shapes (a class is a shape) of varied size, position,
tilt and colour over a noisy colour gradient crossed by a few strokes of clutter. Objects do
not overlap, so every box is fully visible and none is marked difficult. Colour carries no
class information; the object's outline does, which is what a region classifier must learn.
The strokes are edges that belong to no object: they give proposals and background regions
something to be fooled by.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from workers.datasets.base import DatasetConfig, Splits, box_rows, opaque_test_split

if TYPE_CHECKING:
    import torch

Mask = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]

# Masks in the object's own frame: coordinates in [-0.5, 0.5] span the object's side. Tensor methods
# only (x.maximum, not torch.maximum): the registry imports this module without torch.
SHAPES: dict[str, Mask] = {
    "disk": lambda x, y: x * x + y * y < 0.25,
    "square": lambda x, y: x.abs().maximum(y.abs()) < 0.42,
    "triangle": lambda x, y: (y > -0.35) & (y < 0.5 - 1.7 * x.abs()),
    "ring": lambda x, y: ((x * x + y * y) > 0.08) & ((x * x + y * y) < 0.25),
    "cross": lambda x, y: ((x.abs() < 0.14) & (y.abs() < 0.5)) | ((y.abs() < 0.14) & (x.abs() < 0.5)),
    "ell": lambda x, y: ((x > -0.45) & (x < -0.15) & (y.abs() < 0.5)) | ((y > 0.2) & (y < 0.5) & (x.abs() < 0.45)),
    "frame": lambda x, y: (x.abs().maximum(y.abs()) < 0.48) & (x.abs().maximum(y.abs()) > 0.3),
    "half-disk": lambda x, y: (x * x + y * y < 0.25) & (y > 0),
}
SHAPE_NAMES = tuple(SHAPES)


@dataclass(frozen=True)
class ScenesConfig(DatasetConfig):
    num_classes: int = 4
    image_size: int = 112
    train_images: int = 400
    val_images: int = 100
    test_images: int = 100
    max_objects: int = 4
    min_object: float = 0.16  # object side, as a fraction of the image side
    max_object: float = 0.42
    noise: float = 0.04
    clutter: int = 3  # up to this many straight strokes per image: edges that belong to no object

    def validate(self, where: str) -> None:
        if not 1 <= self.num_classes <= len(SHAPES):
            raise ValueError(f"{where}.num_classes: between 1 and {len(SHAPES)}, got {self.num_classes}")
        for name in ("train_images", "val_images", "test_images", "max_objects"):
            if getattr(self, name) < 1:
                raise ValueError(f"{where}.{name}: must be at least 1, got {getattr(self, name)}")
        if self.clutter < 0 or self.noise < 0:
            raise ValueError(f"{where}: clutter and noise must not be negative")
        if self.image_size < 48:
            raise ValueError(f"{where}.image_size: scenes need at least 48 px, got {self.image_size}")
        if not 0 < self.min_object <= self.max_object <= 0.9:
            raise ValueError(f"{where}: need 0 < min_object <= max_object <= 0.9, "
                             f"got {self.min_object} and {self.max_object}")
        if self.min_object * self.image_size < 8:
            raise ValueError(f"{where}.min_object: objects under 8 px have no recognisable shape")


def _place(rng: np.random.Generator, count: int, size: int,
           sides: tuple[float, float]) -> list[tuple[float, float, float]]:
    """Centres and sides of up to `count` squares that neither overlap nor leave the image."""
    placed: list[tuple[float, float, float]] = []
    for _ in range(count * 20):  # rejection sampling; a crowded image simply gets fewer objects
        if len(placed) == count:
            break
        side = rng.uniform(*sides) * size
        cx, cy = rng.uniform(side / 2 + 1, size - side / 2 - 1, size=2)
        if all(abs(cx - x) > (side + s) / 2 + 2 or abs(cy - y) > (side + s) / 2 + 2 for x, y, s in placed):
            placed.append((cx, cy, side))
    return placed


def render_scene(rng: np.random.Generator, config: ScenesConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One image (uint8 3 x S x S) and its target: tight boxes of the drawn pixels, labels 1..C."""
    import torch

    size = config.image_size
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    background = torch.as_tensor(rng.uniform(0, 1, (3, 1, 1)), dtype=torch.float32)
    slope = torch.as_tensor(rng.uniform(-0.25, 0.25, (3, 1, 1)), dtype=torch.float32)
    image = background + slope * (gx / size - 0.5)
    for _ in range(int(rng.integers(0, config.clutter + 1))):
        (x0, y0), angle = rng.uniform(0, size, 2), rng.uniform(0, np.pi)
        distance = ((gx - x0) * np.sin(angle) - (gy - y0) * np.cos(angle)).abs()
        stroke = torch.as_tensor(rng.uniform(0, 1, (3, 1, 1)), dtype=torch.float32)
        image = torch.where(distance < rng.uniform(0.5, 2.0), stroke, image)
    boxes, labels = [], []
    objects = _place(rng, int(rng.integers(1, config.max_objects + 1)), size, (config.min_object, config.max_object))
    for cx, cy, side in objects:
        label = int(rng.integers(config.num_classes))
        angle = rng.uniform(-np.pi / 6, np.pi / 6)  # a tilted square must stay a square, not a diamond
        cos, sin = float(np.cos(angle)), float(np.sin(angle))
        dx, dy = (gx - cx) / side, (gy - cy) / side
        mask = SHAPES[SHAPE_NAMES[label]](cos * dx + sin * dy, -sin * dx + cos * dy)
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if len(xs) == 0:
            continue
        sign = 1.0 if rng.uniform() < 0.5 else -1.0
        contrast = torch.as_tensor(rng.uniform(0.35, 0.75, (3, 1, 1)), dtype=torch.float32) * sign
        colour = (background + contrast).clamp(0, 1)
        image = torch.where(mask, colour, image)
        boxes.append([xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1])
        labels.append(label + 1)  # 0 is background
    image = image + config.noise * torch.as_tensor(rng.standard_normal((3, size, size)), dtype=torch.float32)
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.zeros(len(labels), dtype=torch.bool),
    }
    return (image.clamp(0, 1) * 255).round().to(torch.uint8), target


def _split(config: ScenesConfig, count: int, stream: int) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    import torch

    rng = np.random.default_rng([config.seed, stream])
    scenes = [render_scene(rng, config) for _ in range(count)]
    return torch.stack([image for image, _ in scenes]), [target for _, target in scenes]


def class_names(config: ScenesConfig) -> list[str]:
    return list(SHAPE_NAMES[: config.num_classes])


def load(config: ScenesConfig) -> Splits:
    import torch

    from workers.datasets.images import TensorImages

    train_x, train_t = _split(config, config.train_images, 1)
    val_x, val_t = _split(config, config.val_images, 2)
    test_x, _ = _split(config, config.test_images, 3)
    order, ids = opaque_test_split(len(test_x), config.seed)
    return Splits(
        train=TensorImages(train_x, train_t), val=TensorImages(val_x, val_t),
        test=TensorImages(test_x[torch.as_tensor(order)], ids), num_classes=config.num_classes,
        class_names=class_names(config), image_size=config.image_size, info={"task": "detection"})


def test_labels(config: ScenesConfig) -> dict[str, list[list[float]]]:
    """The held boxes of the test split, [x1, y1, x2, y2, class_id, difficult]: for the challenge server only."""
    _, targets = _split(config, config.test_images, 3)
    order, ids = opaque_test_split(len(targets), config.seed)
    return {image_id: box_rows(targets[i]) for image_id, i in zip(ids, order.tolist())}



def train_size(config: ScenesConfig) -> int:
    return config.train_images
