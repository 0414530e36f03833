"""`imagefolder`: any class-per-folder tree of JPEG/PNG files, read lazily from disk.

Layout: root/train/<class>/*.jpg (also .jpeg, .png, any case); optional root/val/<class>/...
and root/test/<class>/.... A split without its folder is carved out of train, per class, by
seed. Classes are the sorted folder names of train.
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.datasets.base import DatasetConfig, DatasetError, Splits, opaque_test_split, require_dir

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
Items = list[tuple[Path, int]]


@dataclass(frozen=True)
class ImageFolderConfig(DatasetConfig):
    root: str = ""
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    limit_classes: int = 0  # 0: all classes
    limit_per_class: int = 0  # 0: all images; else the first M of each class folder, in every split
    image_size: int = 0  # 0: the first image's longer side

    def validate(self, where: str) -> None:
        if not self.root:
            raise ValueError(f"{where}.root: the dataset folder is required")
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{where}.{name}: must lie in [0, 1), got {getattr(self, name)}")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(f"{where}: val_fraction + test_fraction must be below 1")
        for name in ("limit_classes", "limit_per_class", "image_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{where}.{name}: must be 0 (none) or positive, got {getattr(self, name)}")


def dataset_root(root: str, what: str) -> Path:
    # An empty root would silently mean the current directory.
    if not root:
        raise DatasetError(f"{what}: no root folder given")
    return require_dir(Path(root), what)


def _visible(entry: os.DirEntry) -> bool:
    # Dot files are editor and OS droppings (e.g. macOS ._x.jpg), never data.
    return not entry.name.startswith(".")


def class_folders(folder: Path) -> list[str]:
    """The sorted names of the sub-folders of `folder`."""
    # scandir rather than Path.iterdir: its type check needs no stat per entry.
    with os.scandir(folder) as entries:
        names = sorted(e.name for e in entries if _visible(e) and e.is_dir())
    if not names:
        raise DatasetError(f"{folder}: no class folders in it")
    return names


def image_files(folder: Path, limit: int = 0) -> list[Path]:
    """The sorted image files of `folder`, the first `limit` of them when limit > 0."""
    with os.scandir(folder) as entries:
        names = sorted(e.name for e in entries
                       if _visible(e) and e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file())
    if not names:
        raise DatasetError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
    return [folder / name for name in (names[:limit] if limit else names)]


def carve(paths: list[Path], seed: int, name: str, counts: list[int]) -> list[list[Path]]:
    """`paths` cut into random parts of the given sizes plus the rest, each kept sorted.

    The class name, not its index, feeds the generator, so a class's parts stay the same
    whichever other classes are present.
    """
    order = np.random.default_rng([seed, 1, zlib.crc32(name.encode())]).permutation(len(paths))
    bounds = np.cumsum(counts)
    return [[paths[i] for i in sorted(part)] for part in np.split(order, bounds)]


def first_image_size(path: Path) -> int:
    from PIL import Image

    # PIL reads only the header here; decoding a large JPEG just for its size would be waste.
    try:
        with Image.open(path) as image:
            return max(image.size)
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from None


def _folder_split(folder: Path, all_classes: set[str], classes: list[str], limit: int) -> Items:
    index = {name: i for i, name in enumerate(classes)}
    items: Items = []
    for name in class_folders(folder):
        if name not in all_classes:
            raise DatasetError(f"{folder / name}: class folder not in {folder.parent / 'train'}")
        if name in index:  # the others are beyond limit_classes
            items += [(path, index[name]) for path in image_files(folder / name, limit)]
    if not items:
        raise DatasetError(f"{folder}: no images of the classes {', '.join(classes)}")
    return items


def _rounded(n: int, fraction: float) -> int:
    return int(np.floor(n * fraction + 0.5))


def _carve_train(train_dir: Path, classes: list[str], fractions: dict[str, float],
                 config: ImageFolderConfig) -> dict[str, Items]:
    """Train per class, less the splits named in `fractions`, which are cut out of it."""
    splits: dict[str, Items] = {"train": [], **{split: [] for split in fractions}}
    for label, name in enumerate(classes):
        paths = image_files(train_dir / name, config.limit_per_class)
        counts = [_rounded(len(paths), f) for f in fractions.values()]
        *parts, rest = carve(paths, config.seed, name, counts)
        if not rest:
            raise DatasetError(f"{train_dir / name}: {len(paths)} images leave none for training "
                               f"after carving {' and '.join(fractions)} out of them")
        for split, part in zip(fractions, parts):
            splits[split] += [(path, label) for path in part]
        splits["train"] += [(path, label) for path in rest]
    for split, fraction in fractions.items():
        if not splits[split]:
            raise DatasetError(f"{train_dir.parent / split} does not exist and {split}_fraction={fraction} "
                               f"carves no image out of {train_dir}: add the folder or raise the fraction")
    return splits


def _partition(config: ImageFolderConfig) -> tuple[list[str], dict[str, Items]]:
    root = dataset_root(config.root, "imagefolder root")
    train_dir = require_dir(root / "train", "imagefolder train")
    all_classes = class_folders(train_dir)
    classes = all_classes[:config.limit_classes] if config.limit_classes else all_classes
    given = {split: _folder_split(root / split, set(all_classes), classes, config.limit_per_class)
             for split in ("val", "test") if (root / split).is_dir()}
    fractions = {split: getattr(config, f"{split}_fraction") for split in ("val", "test") if split not in given}
    return classes, {**_carve_train(train_dir, classes, fractions, config), **given}


def opaque_test_order(items: Items, seed: int) -> tuple[list[Path], dict[str, int]]:
    """The test files in opaque order, and their public ids with the labels the server holds."""
    order, ids = opaque_test_split(len(items), seed)
    ordered = [items[i] for i in order]
    return [p for p, _ in ordered], dict(zip(ids, (label for _, label in ordered)))


def opaque_test_items(items: Items, seed: int):
    """The test items in opaque order with their public ids (a FileImages), and the held labels."""
    from workers.datasets.images import FileImages  # torch: only where images are read

    paths, labels = opaque_test_order(items, seed)
    return FileImages(paths, list(labels.keys())), labels  # the ids, in the opaque order


def _labelled(items: Items):
    from workers.datasets.images import FileImages

    return FileImages([p for p, _ in items], [label for _, label in items])


def load(config: ImageFolderConfig) -> Splits:
    classes, splits = _partition(config)
    test, _ = opaque_test_items(splits["test"], config.seed)
    size = config.image_size or first_image_size(splits["train"][0][0])
    return Splits(
        train=_labelled(splits["train"]), val=_labelled(splits["val"]), test=test,
        num_classes=len(classes), class_names=classes, image_size=size,
        info={"root": config.root, "counts": {k: len(v) for k, v in splits.items()}})


def test_labels(config: ImageFolderConfig) -> dict[str, int]:
    """The held labels of the test split: for the challenge server only."""
    _, splits = _partition(config)
    return opaque_test_order(splits["test"], config.seed)[1]


def class_names(config: ImageFolderConfig) -> list[str]:
    """The classes' names, without reading a single image."""
    train_dir = require_dir(dataset_root(config.root, "imagefolder root") / "train", "imagefolder train")
    names = class_folders(train_dir)
    return names[:config.limit_classes] if config.limit_classes else names


def train_size(config: ImageFolderConfig) -> int:
    """The train split's images, listed (not read) as `load` lists them: folders, limits, carving and all."""
    return len(_partition(config)[1]["train"])
