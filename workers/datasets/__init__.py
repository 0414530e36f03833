"""The dataset registry: name -> (typed options, loader, held test labels)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from workers.datasets import digits, imagefolder, imagenet, synthetic
from workers.datasets.base import DatasetConfig, DatasetError, Splits
from workers.typed import from_dict


@dataclass(frozen=True)
class DatasetEntry:
    config: type[DatasetConfig]
    load: Callable[[Any], Splits]
    test_labels: Callable[[Any], dict[str, int]]  # for the challenge server only
    task: str = "classification"


DATASETS: dict[str, DatasetEntry] = {
    "synthetic": DatasetEntry(synthetic.SyntheticConfig, synthetic.load, synthetic.test_labels),
    "digits": DatasetEntry(digits.DigitsConfig, digits.load, digits.test_labels),
    "imagefolder": DatasetEntry(imagefolder.ImageFolderConfig, imagefolder.load, imagefolder.test_labels),
    "imagenet": DatasetEntry(imagenet.ImageNetConfig, imagenet.load, imagenet.test_labels),
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


def held_test_labels(name: str, options: dict[str, Any]) -> dict[str, int]:
    return get_dataset(name).test_labels(dataset_config(name, options))


def config_dict(config: DatasetConfig) -> dict[str, Any]:
    return asdict(config)


__all__ = ["DATASETS", "DatasetError", "Splits", "dataset_config", "get_dataset", "held_test_labels", "load_dataset"]

from workers.detection import coco as det_coco, scenes as det_scenes, voc as det_voc  # noqa: E402

DATASETS["synthetic-scenes"] = DatasetEntry(det_scenes.ScenesConfig, det_scenes.load, det_scenes.test_labels, task="detection")
DATASETS["voc"] = DatasetEntry(det_voc.VOCConfig, det_voc.load, det_voc.test_labels, task="detection")
DATASETS["coco"] = DatasetEntry(det_coco.COCOConfig, det_coco.load, det_coco.test_labels, task="detection")
