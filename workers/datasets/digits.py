"""`digits`: scikit-learn's bundled handwritten digits (real 8x8 scans), resized to the input size."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from workers.datasets.base import DatasetConfig, Splits, TensorImages, opaque_test_split


@dataclass(frozen=True)
class DigitsConfig(DatasetConfig):
    image_size: int = 32
    val_fraction: float = 0.2
    test_fraction: float = 0.2

    def validate(self, where: str) -> None:
        if self.image_size < 8:
            raise ValueError(f"{where}.image_size: at least 8 px, got {self.image_size}")
        if not 0 < self.val_fraction + self.test_fraction < 1:
            raise ValueError(f"{where}: val_fraction + test_fraction must lie in (0, 1)")


def _partition(config: DigitsConfig):
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.as_tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    images = F.interpolate(images, size=config.image_size, mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    labels = torch.as_tensor(data.target)
    order = np.random.default_rng(config.seed).permutation(len(labels))
    n_val, n_test = int(len(order) * config.val_fraction), int(len(order) * config.test_fraction)
    parts = np.split(order, [len(order) - n_val - n_test, len(order) - n_test])
    return images, labels, parts


def load(config: DigitsConfig) -> Splits:
    images, labels, (train, val, test) = _partition(config)
    perm, ids = opaque_test_split(len(test), config.seed)
    test = test[perm]
    return Splits(
        train=TensorImages(images[train], labels[train].tolist()),
        val=TensorImages(images[val], labels[val].tolist()),
        test=TensorImages(images[test], ids), num_classes=10, class_names=[str(d) for d in range(10)],
        image_size=config.image_size)


def test_labels(config: DigitsConfig) -> dict[str, int]:
    _, labels, (_, _, test) = _partition(config)
    perm, ids = opaque_test_split(len(test), config.seed)
    return dict(zip(ids, labels[test[perm]].tolist()))
