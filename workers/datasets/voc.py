"""`voc`: PASCAL VOC in its VOCdevkit layout, with the `difficult` flags kept.

    <root>/VOC<year>/JPEGImages/<id>.jpg
    <root>/VOC<year>/Annotations/<id>.xml
    <root>/VOC<year>/ImageSets/Main/{train,val,trainval,test}.txt

VOC's boxes are 1-based inclusive pixel indices; here they become continuous coordinates
(x1 = xmin - 1, x2 = xmax), so a box's width is xmax - xmin + 1 as the devkit counts it.
The test split is read for its image list only; its annotations are read by `test_labels`,
for the challenge server.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workers.datasets.base import DatasetConfig, DatasetError, Splits, box_rows, opaque_test_split, require_dir

if TYPE_CHECKING:
    import torch

    from workers.datasets.images import FileImages

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


@dataclass(frozen=True)
class VOCConfig(DatasetConfig):
    root: str = "data/VOCdevkit"
    year: str = "2007"
    train_set: str = "train"  # an ImageSets/Main list
    val_set: str = "val"
    test_set: str = "test"
    classes: tuple[str, ...] = VOC_CLASSES  # objects of other names are left out
    max_images: int = 0  # 0: every image; else the first N of each list (smoke runs)

    def validate(self, where: str) -> None:
        if not self.classes:
            raise ValueError(f"{where}.classes: at least one class")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"{where}.classes: names repeat")
        if self.max_images < 0:
            raise ValueError(f"{where}.max_images: must not be negative, got {self.max_images}")

    @property
    def base(self) -> Path:
        return Path(self.root) / f"VOC{self.year}"


def image_ids(config: VOCConfig, image_set: str) -> list[str]:
    path = config.base / "ImageSets" / "Main" / f"{image_set}.txt"
    if not path.is_file():
        raise DatasetError(f"voc: image set file {path} does not exist")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    return ids[: config.max_images] if config.max_images else ids


def read_annotation(path: Path, classes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    import torch  # here, not at the top: the registry imports this module without torch

    if not path.is_file():
        raise DatasetError(f"voc: annotation file {path} does not exist")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DatasetError(f"voc: annotation file {path} is not valid XML: {exc}") from None
    boxes, labels, difficult = [], [], []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in classes:
            continue
        box = obj.find("bndbox")
        if box is None:
            raise DatasetError(f"voc: {path}: object {name!r} has no bndbox")
        try:
            xmin, ymin, xmax, ymax = (float(box.findtext(k) or "") for k in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError:
            raise DatasetError(f"voc: {path}: object {name!r} has a malformed bndbox") from None
        boxes.append([xmin - 1, ymin - 1, xmax, ymax])
        labels.append(classes.index(name) + 1)
        difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64), "difficult": torch.tensor(difficult, dtype=torch.bool)}


def _image_paths(config: VOCConfig, ids: list[str]) -> list[Path]:
    folder = require_dir(config.base / "JPEGImages", "voc")
    paths = [folder / f"{i}.jpg" for i in ids]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"voc: image {missing[0]} does not exist ({len(missing)} missing)")
    return paths


def _labelled(config: VOCConfig, image_set: str) -> FileImages:
    from workers.datasets.images import FileImages

    ids = image_ids(config, image_set)
    annotations = require_dir(config.base / "Annotations", "voc")
    targets = [read_annotation(annotations / f"{i}.xml", config.classes) for i in ids]
    return FileImages(_image_paths(config, ids), targets)


def load(config: VOCConfig) -> Splits:
    from workers.datasets.images import FileImages

    require_dir(config.base, "voc")
    test_ids = image_ids(config, config.test_set)
    order, public = opaque_test_split(len(test_ids), config.seed)
    return Splits(
        train=_labelled(config, config.train_set), val=_labelled(config, config.val_set),
        test=FileImages(_image_paths(config, [test_ids[i] for i in order]), public),
        num_classes=len(config.classes), class_names=list(config.classes), image_size=500,  # VOC's longer side
        info={"task": "detection", "year": config.year})


def test_labels(config: VOCConfig) -> dict[str, list[list[float]]]:
    """The held boxes of the test split, [x1, y1, x2, y2, class_id, difficult]: for the challenge server only."""
    test_ids = image_ids(config, config.test_set)
    order, public = opaque_test_split(len(test_ids), config.seed)
    annotations = require_dir(config.base / "Annotations", "voc")
    return {image_id: box_rows(read_annotation(annotations / f"{test_ids[i]}.xml", config.classes))
            for image_id, i in zip(public, order.tolist())}


def class_names(config: VOCConfig) -> list[str]:
    return list(config.classes)


def train_size(config: VOCConfig) -> int:
    return len(image_ids(config, config.train_set))
