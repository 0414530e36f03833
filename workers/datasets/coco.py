"""`coco`: COCO-style instances JSON (boxes only), in the layout of the official release.

    <root>/<train_images>/..., <root>/<train_annotations>   (instances JSON)
    <root>/<val_images>/...,   <root>/<val_annotations>
    <root>/<test_images>/...,  <root>/<test_image_info>      (image list only, as image_info_test-dev2017.json)

Category ids (1..90 in COCO, with gaps) become 1..C in id order. `iscrowd` boxes are kept as
difficult: neither a positive nor a false positive at scoring, as COCO itself treats them.
Workers read only the image list of the test split; `test_labels` reads `test_annotations`, a
file only the challenge server holds.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.datasets.base import DatasetConfig, DatasetError, Splits, box_rows, opaque_test_split, require_dir

if TYPE_CHECKING:
    import torch

    from workers.datasets.images import FileImages


@dataclass(frozen=True)
class COCOConfig(DatasetConfig):
    root: str = "data/coco"
    train_images: str = "train2017"
    train_annotations: str = "annotations/instances_train2017.json"
    val_images: str = "val2017"
    val_annotations: str = "annotations/instances_val2017.json"
    test_images: str = "test2017"
    test_image_info: str = "annotations/image_info_test-dev2017.json"
    test_annotations: str = ""  # the held labels, on the server only
    max_images: int = 0  # 0: every image; else the first N of each split, by image id (smoke runs)

    def validate(self, where: str) -> None:
        if self.max_images < 0:
            raise ValueError(f"{where}.max_images: must not be negative, got {self.max_images}")


def _read_json(config: COCOConfig, relative: str) -> dict[str, Any]:
    path = Path(config.root) / relative
    if not path.is_file():
        raise DatasetError(f"coco: annotation file {path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"coco: {path} is not valid JSON: {exc}") from None


def _images(config: COCOConfig, data: dict[str, Any]) -> list[dict[str, Any]]:
    images = sorted(data.get("images", []), key=lambda image: image["id"])
    return images[: config.max_images] if config.max_images else images


def _paths(config: COCOConfig, folder: str, images: list[dict[str, Any]]) -> list[Path]:
    base = require_dir(Path(config.root) / folder, "coco")
    paths = [base / image["file_name"] for image in images]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"coco: image {missing[0]} does not exist ({len(missing)} missing)")
    return paths


def categories(config: COCOConfig) -> list[dict[str, Any]]:
    """The training file's categories in id order: class k + 1 is the k-th."""
    return sorted(_read_json(config, config.train_annotations).get("categories", []), key=lambda c: c["id"])


def _targets(data: dict[str, Any], images: list[dict[str, Any]],
             class_of: dict[int, int]) -> list[dict[str, torch.Tensor]]:
    import torch  # here, not at the top: the registry imports this module without torch

    found: dict[int, list[dict[str, Any]]] = {image["id"]: [] for image in images}
    for ann in data.get("annotations", []):
        if ann["image_id"] in found and ann["category_id"] in class_of and ann["bbox"][2] > 0 and ann["bbox"][3] > 0:
            found[ann["image_id"]].append(ann)
    targets = []
    for image in images:
        anns = found[image["id"]]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                        "labels": torch.tensor([class_of[a["category_id"]] for a in anns], dtype=torch.int64),
                        "difficult": torch.tensor([bool(a.get("iscrowd", 0)) for a in anns], dtype=torch.bool)})
    return targets


def _labelled(config: COCOConfig, folder: str, annotations: str, class_of: dict[int, int]) -> FileImages:
    from workers.datasets.images import FileImages

    data = _read_json(config, annotations)
    images = _images(config, data)
    return FileImages(_paths(config, folder, images), _targets(data, images, class_of))


def load(config: COCOConfig) -> Splits:
    from workers.datasets.images import FileImages

    require_dir(Path(config.root), "coco")
    cats = categories(config)
    if not cats:
        raise DatasetError(f"coco: {Path(config.root) / config.train_annotations} lists no categories")
    class_of = {c["id"]: k + 1 for k, c in enumerate(cats)}
    test = _images(config, _read_json(config, config.test_image_info))
    order, public = opaque_test_split(len(test), config.seed)
    return Splits(
        train=_labelled(config, config.train_images, config.train_annotations, class_of),
        val=_labelled(config, config.val_images, config.val_annotations, class_of),
        test=FileImages(_paths(config, config.test_images, [test[i] for i in order]), public),
        num_classes=len(cats), class_names=[c["name"] for c in cats], image_size=640,  # COCO's longer side
        info={"task": "detection"})


def test_labels(config: COCOConfig) -> dict[str, list[list[float]]]:
    """The held boxes of the test split, [x1, y1, x2, y2, class_id, difficult]: for the challenge server only."""
    if not config.test_annotations:
        raise DatasetError("coco: test_annotations names no file; the server needs the test split's labels")
    class_of = {c["id"]: k + 1 for k, c in enumerate(categories(config))}
    test = _images(config, _read_json(config, config.test_image_info))
    order, public = opaque_test_split(len(test), config.seed)
    targets = _targets(_read_json(config, config.test_annotations), test, class_of)
    return {image_id: box_rows(targets[i]) for image_id, i in zip(public, order.tolist())}


def class_names(config: COCOConfig) -> list[str]:
    cats = categories(config)
    if not cats:
        raise DatasetError(f"coco: {Path(config.root) / config.train_annotations} lists no categories")
    return [c["name"] for c in cats]


def train_size(config: COCOConfig) -> int:
    """The train folder's images: parsing the instances JSON (450 MB for train2017) only to count them would
    take the plan minutes; the official release lists every file of the folder, annotated or not."""
    folder = require_dir(Path(config.root) / config.train_images, "coco")
    with os.scandir(folder) as entries:
        count = sum(1 for e in entries if e.name.lower().endswith((".jpg", ".jpeg", ".png")) and e.is_file())
    return min(count, config.max_images) if config.max_images else count
