"""`digits`: scikit-learn's bundled handwritten digits (real 8x8 scans), resized to the input size."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workers.datasets.base import DatasetConfig, Splits, opaque_test_split


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


# load_digits() holds this many scans (fixed since scikit-learn shipped it); counted here, the plan need not
# import scikit-learn (seconds) to size the train split. A test checks it against the data.
SCANS = 1797


def _split_sizes(config: DigitsConfig, n: int) -> tuple[int, int, int]:
    n_val, n_test = int(n * config.val_fraction), int(n * config.test_fraction)
    return n - n_val - n_test, n_val, n_test


def _order(config: DigitsConfig, n: int) -> list[np.ndarray]:
    """Indices of the train, val and test images among the n scans."""
    order = np.random.default_rng(config.seed).permutation(n)
    n_train, n_val, _ = _split_sizes(config, n)
    return np.split(order, [n_train, n_train + n_val])


def train_size(config: DigitsConfig) -> int:
    return _split_sizes(config, SCANS)[0]


def _partition(config: DigitsConfig):
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.as_tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    images = F.interpolate(images, size=config.image_size, mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    labels = torch.as_tensor(data.target)
    return images, labels, _order(config, len(labels))


def class_names(config: DigitsConfig) -> list[str]:
    return [str(d) for d in range(10)]


def load(config: DigitsConfig) -> Splits:
    from workers.datasets.images import TensorImages

    images, labels, (train, val, test) = _partition(config)
    perm, ids = opaque_test_split(len(test), config.seed)
    test = test[perm]
    return Splits(
        train=TensorImages(images[train], labels[train].tolist()),
        val=TensorImages(images[val], labels[val].tolist()),
        test=TensorImages(images[test], ids), num_classes=10, class_names=class_names(config),
        image_size=config.image_size)


def test_labels(config: DigitsConfig) -> dict[str, int]:
    """The held labels of the test split: the scans' targets alone, no torch, no resizing."""
    from sklearn.datasets import load_digits

    labels = load_digits().target
    _, _, test = _order(config, len(labels))
    perm, ids = opaque_test_split(len(test), config.seed)
    return dict(zip(ids, labels[test[perm]].tolist()))
