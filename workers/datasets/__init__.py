"""The dataset registry, classification and detection alike: name -> (typed options, loader, held test
labels, class names, task).

Importing it imports no torch (each dataset module imports torch where it renders or reads
images), so the challenge server and the orchestrator's planning read options, class names and
held labels in a fraction of a second and a fraction of the memory.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from workers.datasets import coco, digits, imagefolder, imagenet, scenes, synthetic, voc
from workers.datasets.base import DatasetConfig, DatasetError, ImageDecodeError, Splits
from workers.typed import from_dict


@dataclass(frozen=True)
class DatasetEntry:
    config: type[DatasetConfig]
    load: Callable[[Any], Splits]
    test_labels: Callable[[Any], dict[str, int]]  # for the challenge server only
    class_names: Callable[[Any], list[str]]  # without loading (or rendering) any split
    task: str = "classification"
    # The train split's image count without loading it (the plan's cost estimate); None: not known cheaply.
    train_size: Callable[[Any], int | None] | None = None
    # Whether anyone can rebuild the test labels, so that a challenge on it is "open-book" (said so on the board and
    # in its kit): generated or shipped with the code, or a test split carved out of files the runners and teams
    # read (train/<wnid>/..., annotation files). Only a challenge from a private labels file holds its labels.
    open_book: bool = True


def _entry(module: Any, config: type[DatasetConfig], task: str = "classification",
           open_book: bool = True) -> DatasetEntry:
    return DatasetEntry(config, module.load, module.test_labels, module.class_names, task,
                        getattr(module, "train_size", None), open_book)


DATASETS: dict[str, DatasetEntry] = {
    "synthetic": _entry(synthetic, synthetic.SyntheticConfig),
    "digits": _entry(digits, digits.DigitsConfig),
    "imagefolder": _entry(imagefolder, imagefolder.ImageFolderConfig),
    "imagenet": _entry(imagenet, imagenet.ImageNetConfig),
    "synthetic-scenes": _entry(scenes, scenes.ScenesConfig, task="detection"),
    "voc": _entry(voc, voc.VOCConfig, task="detection"),
    "coco": _entry(coco, coco.COCOConfig, task="detection"),
}


def get_dataset(name: str) -> DatasetEntry:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def dataset_config(name: str, options: dict[str, Any], where: str = "dataset") -> DatasetConfig:
    return from_dict(get_dataset(name).config, options, where, ignore=("name",))


def load_dataset(name: str, options: dict[str, Any]) -> Splits:
    return get_dataset(name).load(dataset_config(name, options))


def dataset_class_names(name: str, options: dict[str, Any]) -> list[str]:
    return list(get_dataset(name).class_names(dataset_config(name, options)))


def held_test_labels(name: str, options: dict[str, Any]) -> dict[str, int]:
    return get_dataset(name).test_labels(dataset_config(name, options))


def dataset_train_size(name: str, options: dict[str, Any]) -> int | None:
    """How many images the train split holds, without loading it; None when the dataset cannot say."""
    count = get_dataset(name).train_size
    return None if count is None else count(dataset_config(name, options))


def config_dict(config: DatasetConfig) -> dict[str, Any]:
    return asdict(config)


__all__ = ["DATASETS", "DatasetError", "ImageDecodeError", "Splits", "dataset_class_names", "dataset_config",
           "dataset_train_size", "get_dataset", "held_test_labels", "load_dataset"]
