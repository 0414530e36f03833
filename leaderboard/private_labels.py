"""A challenge's test set from files only the server holds: a folder of images and a labels file.

Classification: an `image,label` CSV (image: a file name relative to the images folder; label: a class
name, wnid or id), with an optional class list `id,name[,wnid]` (else the labels' own values, sorted).
Detection: a VOC `Annotations/` folder or a COCO JSON. ImageNet as distributed: a held-out part of
`val/`, labelled by the devkit's ground truth or LOC_val_solution.csv (workers.datasets.imagenet).

Each reader returns a `Source`: the images' paths with their labels and the class list. The paths stay
here: challenges.py reads each file once, strips it (kit_images) and stores it under an opaque id.
Every error names the file and line at fault; none quotes a label back beyond the offending cell.
"""
from __future__ import annotations

import csv
import json
import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leaderboard.errors import ChallengeError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


@dataclass
class Source:
    """Images with their labels (classification: a class id; detection: [[x1, y1, x2, y2, class, difficult]])."""

    task: str
    items: list[tuple[Path, Any]]
    class_names: list[str]
    wnids: list[str] = field(default_factory=list)  # aligned with class_names where the classes have wnids
    origin: str = ""  # what labelled them, in words, e.g. "labels.csv (120 rows)"


def _open_csv(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [row for row in csv.reader(f)]
    except OSError as exc:
        raise ChallengeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ChallengeError(f"{path}: not a UTF-8 CSV file ({exc})") from None


def _image_path(images: Path, name: str, where: str) -> Path:
    """`name` inside the images folder, refused when it leaves it or is missing."""
    relative = Path(name.strip())
    if not name.strip() or relative.is_absolute() or ".." in relative.parts:
        raise ChallengeError(f"{where}: image {name!r} must be a file name relative to {images}")
    path = images / relative
    if not path.is_file():
        raise ChallengeError(f"{where}: image {path} does not exist")
    return path


def read_classes(path: Path) -> tuple[list[str], list[str]]:
    """A class list `id,name[,wnid]` (a header line is optional): names and wnids by id 0..C-1."""
    rows = [row for row in _open_csv(path) if any(cell.strip() for cell in row)]
    if rows and not rows[0][0].strip().isdigit():
        rows = rows[1:]  # the header
    names: dict[int, str] = {}
    wnids: dict[int, str] = {}
    for number, row in enumerate(rows, 1):
        if len(row) < 2 or not row[0].strip().isdigit() or not row[1].strip():
            raise ChallengeError(f"{path}: row {number} {','.join(row)!r} is not 'id,name[,wnid]'")
        class_id = int(row[0])
        if class_id in names:
            raise ChallengeError(f"{path}: row {number}: class id {class_id} appears twice")
        names[class_id] = row[1].strip()
        wnids[class_id] = row[2].strip() if len(row) > 2 else ""
    if sorted(names) != list(range(len(names))) or not names:
        raise ChallengeError(f"{path}: class ids must be 0..C-1 with none missing")
    return [names[i] for i in range(len(names))], [wnids[i] for i in range(len(names))]


def _sorted_classes(labels: list[str]) -> list[str]:
    values = sorted(set(labels))
    if all(v.isdigit() for v in values):
        return sorted(values, key=int)
    return values


def classification(images: Path, labels: Path, classes: Path | None = None,
                   known_names: list[str] | None = None) -> Source:
    """A folder of images and its `image,label` CSV. `known_names`: the class list when no `classes` file is given
    (a registry dataset's, so that runs trained on it predict the same class ids); else the labels' values, sorted."""
    rows = _open_csv(labels)
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["image", "label"]:
        raise ChallengeError(f"{labels}:1: the header must be 'image,label'")
    pairs: list[tuple[Path, str]] = []
    seen: dict[Path, int] = {}
    for number, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2 or not row[1].strip():
            raise ChallengeError(f"{labels}:{number}: expected 'image,label', got {len(row)} fields")
        path = _image_path(images, row[0], f"{labels}:{number}")
        if path in seen:
            raise ChallengeError(f"{labels}:{number}: image {row[0]!r} is labelled twice (first on line {seen[path]})")
        seen[path] = number
        pairs.append((path, row[1].strip()))
    if not pairs:
        raise ChallengeError(f"{labels}: no labelled image")
    names, wnids = (read_classes(classes) if classes else
                    (list(known_names), []) if known_names else (_sorted_classes([v for _, v in pairs]), []))
    lookup = {name: i for i, name in enumerate(names)} | {w: i for i, w in enumerate(wnids) if w}
    items: list[tuple[Path, Any]] = []
    for (path, value), number in zip(pairs, (seen[p] for p, _ in pairs)):
        if value in lookup:
            items.append((path, lookup[value]))
        elif value.isdigit() and int(value) < len(names):
            items.append((path, int(value)))
        else:
            raise ChallengeError(f"{labels}:{number}: label {value!r} is no class "
                                 f"{'of ' + str(classes) if classes else 'name'} (a name, wnid or id 0..{len(names) - 1})")
    return Source("classification", items, names, wnids if any(wnids) else [],
                  f"{labels.name} ({len(items)} images)")


def _class_ids(names: list[str], given: Path | None) -> list[str]:
    return read_classes(given)[0] if given else sorted(set(names))


def voc(images: Path, annotations: Path, classes: Path | None = None) -> Source:
    """A VOC Annotations/ folder: one XML per image, boxes in 1-based pixels as VOC writes them."""
    files = sorted(p for p in annotations.glob("*.xml") if p.is_file())
    if not files:
        raise ChallengeError(f"{annotations}: no .xml annotation files")
    parsed = []
    for xml in files:
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError as exc:
            raise ChallengeError(f"{xml}: not valid XML ({exc})") from None
        name = (root.findtext("filename") or "").strip()
        path = images / name if name else None
        if path is None or not path.is_file():
            candidates = [p for p in images.glob(xml.stem + ".*") if p.suffix.lower() in IMAGE_SUFFIXES]
            if len(candidates) != 1:
                raise ChallengeError(f"{xml}: no image {name or xml.stem + '.*'} in {images}")
            path = candidates[0]
        objects = []
        for obj in root.iter("object"):
            label = (obj.findtext("name") or "").strip()
            box = obj.find("bndbox")
            try:
                coords = [float(box.findtext(k) or "") for k in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr]
            except (AttributeError, ValueError):
                raise ChallengeError(f"{xml}: object {label!r} has no well-formed bndbox") from None
            difficult = (obj.findtext("difficult") or "0").strip() == "1"
            objects.append((label, coords, difficult))
        parsed.append((path, objects))
    names = _class_ids([label for _, objects in parsed for label, _, _ in objects], classes)
    index = {name: i + 1 for i, name in enumerate(names)}  # detection class ids are 1..C
    items: list[tuple[Path, Any]] = []
    for path, objects in parsed:
        # As workers.datasets.voc reads them: VOC's pixels are 1-based, the scorer's 0-based.
        items.append((path, [[x1 - 1, y1 - 1, x2, y2, index[label], int(d)]
                             for label, (x1, y1, x2, y2), d in objects if label in index]))
    return Source("detection", items, names, [], f"{annotations.name}/ ({len(items)} images)")


def coco(images: Path, annotations: Path) -> Source:
    """A COCO JSON (images, annotations, categories); class k + 1 is the k-th category by id."""
    try:
        data = json.loads(annotations.read_text())
        categories = sorted(data["categories"], key=lambda c: c["id"])
        class_of = {c["id"]: k + 1 for k, c in enumerate(categories)}
        found: dict[Any, list[list[Any]]] = {image["id"]: [] for image in data["images"]}
        for ann in data.get("annotations", []):
            x, y, w, h = (float(v) for v in ann["bbox"])
            if ann["image_id"] in found and ann["category_id"] in class_of and w > 0 and h > 0:
                found[ann["image_id"]].append([x, y, x + w, y + h, class_of[ann["category_id"]],
                                               int(bool(ann.get("iscrowd", 0)))])
        files = [(image["id"], str(image["file_name"])) for image in data["images"]]
    except OSError as exc:
        raise ChallengeError(f"{annotations}: cannot read ({exc.strerror or exc})") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ChallengeError(f"{annotations}: not a COCO annotation file with images, annotations and "
                             f"categories ({type(exc).__name__}: {exc})") from None
    items: list[tuple[Path, Any]] = [(_image_path(images, name, str(annotations)), found[image_id])
                                     for image_id, name in files]
    if not items:
        raise ChallengeError(f"{annotations}: no images")
    return Source("detection", items, [str(c["name"]) for c in categories], [],
                  f"{annotations.name} ({len(items)} images)")


def detection(images: Path, labels: Path, classes: Path | None = None) -> Source:
    """A VOC Annotations folder or a COCO JSON file, told apart by what `labels` is."""
    if labels.is_dir():
        return voc(images, labels, classes)
    if classes is not None:
        raise ChallengeError("--classes: a COCO file names its own categories; give it only with a VOC folder")
    return coco(images, labels)


def imagenet_val(options: dict[str, Any], per_class: int) -> Source:
    """`per_class` val images of each kept class, drawn at random, labelled as workers.datasets.imagenet
    labels val (the devkit's ground truth, LOC_val_solution.csv or val/<wnid>/); class ids are those of
    the training folders, so a model trained on `train/` predicts in the same ids."""
    from workers.datasets import DatasetError, dataset_config
    from workers.datasets import imagenet as inet

    try:
        config = dataset_config("imagenet", dict(options))
        assert isinstance(config, inet.ImageNetConfig)
        root = inet.dataset_root(config.root, "imagenet root")
        all_wnids, classes = inet._train_classes(root, config)
        synsets = inet._synsets(root)
        known = synsets or inet.Synsets({w: w for w in all_wnids}, str(root / "train"))
        labelled, _, source = inet._val(root, known)
    except DatasetError as exc:
        raise ChallengeError(str(exc)) from None
    except ValueError as exc:  # an ill-typed option
        raise ChallengeError(str(exc)) from None
    by_class: dict[int, list[Path]] = {}
    for path, label in inet._keep(labelled, classes, 0):
        by_class.setdefault(label, []).append(path)
    rng = secrets.SystemRandom()
    items: list[tuple[Path, Any]] = []
    for label in range(len(classes)):
        paths = by_class.get(label, [])
        if len(paths) < per_class:
            raise ChallengeError(f"{root / 'val'}: class {classes[label]} has {len(paths)} val images, "
                                 f"fewer than the {per_class} asked for")
        items += [(path, label) for path in rng.sample(paths, per_class)]
    return Source("classification", items, [known.words.get(w, w) for w in classes], list(classes),
                  f"ImageNet val ({source['kind']}: {source['path']}, sha256 {source['sha256'] or '-'})")
