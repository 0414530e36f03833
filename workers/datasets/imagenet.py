"""`imagenet`: ILSVRC2012 classification as distributed, read lazily from disk.

root/train/<wnid>/*.JPEG, and root/val/*.JPEG labelled by either the devkit
(ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt with meta.mat, or the one
<any folder>/data/ holding both) or the Kaggle files (LOC_val_solution.csv,
LOC_synset_mapping.txt); or root/val/<wnid>/*.JPEG. Which of them labelled val, with the
file's SHA-256, is the Splits' `label_source`, recorded in the run's metrics.
The official val images are the val split, so val error compares with the papers; the test
split is a seeded holdout of `test_per_class` train images per class.
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.datasets.base import DatasetConfig, DatasetError, Splits, require_dir
from workers.datasets.imagefolder import (
    Items,
    carve,
    class_folders,
    dataset_root,
    first_image_size,
    image_files,
    opaque_test_items,
    opaque_test_order,
)

DEVKIT_DATA = Path("ILSVRC2012_devkit_t12") / "data"
GROUND_TRUTH_NAME = "ILSVRC2012_validation_ground_truth.txt"
GROUND_TRUTH = DEVKIT_DATA / GROUND_TRUTH_NAME
META_MAT = DEVKIT_DATA / "meta.mat"
KAGGLE_SOLUTION = Path("LOC_val_solution.csv")
KAGGLE_SYNSETS = Path("LOC_synset_mapping.txt")
WNID = re.compile(r"n\d{8}")
VAL_NAME = re.compile(r"ILSVRC2012_val_(\d+)")


@dataclass(frozen=True)
class ImageNetConfig(DatasetConfig):
    root: str = ""
    limit_classes: int = 0  # 0: all 1000
    limit_per_class: int = 0  # 0: all images; else at most this many per class in train and in val
    test_per_class: int = 10

    def validate(self, where: str) -> None:
        if not self.root:
            raise ValueError(f"{where}.root: the dataset folder is required")
        for name in ("limit_classes", "limit_per_class"):
            if getattr(self, name) < 0:
                raise ValueError(f"{where}.{name}: must be 0 (none) or positive, got {getattr(self, name)}")
        if self.test_per_class < 1:
            raise ValueError(f"{where}.test_per_class: must be at least 1, got {self.test_per_class}")
        if self.limit_per_class and self.limit_per_class <= self.test_per_class:
            raise ValueError(f"{where}.limit_per_class: must exceed test_per_class ({self.test_per_class}) "
                             f"to leave training images, got {self.limit_per_class}")


@dataclass(frozen=True)
class Synsets:
    """The known wnids with their words, and the file they come from."""

    words: dict[str, str]
    source: str


def parse_meta_mat(path: Path) -> tuple[dict[int, str], Synsets]:
    """ILSVRC2012_ID -> wnid of the 1000 leaf synsets (num_children == 0), and their words."""
    from scipy.io import loadmat

    if not path.is_file():
        raise DatasetError(f"{path}: file does not exist (the devkit's class list)")
    try:
        synsets = np.atleast_1d(loadmat(path, squeeze_me=True)["synsets"])
        ids, wnids, words, children = (synsets[f] for f in ("ILSVRC2012_ID", "WNID", "words", "num_children"))
    # A corrupt .mat file fails deep inside scipy with all kinds of errors; all mean the same here.
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"{path}: not a devkit meta.mat with a synsets struct "
                           f"(ILSVRC2012_ID, WNID, words, num_children): {exc!r}") from None
    leaves = [i for i, n in enumerate(children) if int(n) == 0]
    return ({int(ids[i]): str(wnids[i]) for i in leaves},
            Synsets({str(wnids[i]): str(words[i]) for i in leaves}, str(path)))


def parse_synset_mapping(path: Path) -> Synsets:
    """Kaggle's LOC_synset_mapping.txt: lines "n01440764 tench, Tinca tinca"."""
    words = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        wnid, _, name = line.strip().partition(" ")
        if not WNID.fullmatch(wnid):
            raise DatasetError(f"{path}:{number}: {line!r} does not start with a wnid like n01440764")
        words[wnid] = name.strip() or wnid
    return Synsets(words, str(path))


def _devkit_candidates(root: Path) -> list[Path]:
    """Every <root>/*/data/ folder holding the devkit's ground truth, sorted."""
    with os.scandir(root) as entries:
        folders = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    return [root / name / "data" for name in folders if (root / name / "data" / GROUND_TRUTH_NAME).is_file()]


def find_devkit(root: Path) -> Path | None:
    """The devkit's data folder: the one <root>/*/data/ with both the ground truth and meta.mat.

    Any folder name will do (an unpacked archive is often renamed); several complete devkits are
    an error naming them all, since which one labels val would be a guess. The usual folder
    with the ground truth but no meta.mat is still the devkit, so that its missing meta.mat is
    reported rather than passed over for the Kaggle files.
    """
    candidates = _devkit_candidates(root)
    complete = [folder for folder in candidates if (folder / "meta.mat").is_file()]
    if len(complete) > 1:
        raise DatasetError(f"{root}: {len(complete)} devkits, each with {GROUND_TRUTH_NAME} and meta.mat: "
                           f"{', '.join(str(folder) for folder in complete)}; keep one of them")
    if complete:
        return complete[0]
    return root / DEVKIT_DATA if root / DEVKIT_DATA in candidates else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def label_source(root: Path, kind: str, path: Path, hashed: bool = True) -> dict[str, str | None]:
    """What labelled val: {"kind": devkit | loc_csv | val_folders, "path": relative to root, "sha256"}."""
    return {"kind": kind, "path": path.relative_to(root).as_posix(), "sha256": sha256_of(path) if hashed else None}


def _synsets(root: Path) -> Synsets | None:
    """The class list that names the classes, when the root has one."""
    meta = (find_devkit(root) or root / DEVKIT_DATA) / "meta.mat"
    if meta.is_file():
        return parse_meta_mat(meta)[1]
    if (root / KAGGLE_SYNSETS).is_file():
        return parse_synset_mapping(root / KAGGLE_SYNSETS)
    return None


def parse_ground_truth(path: Path, count: int) -> list[int]:
    """The devkit's ILSVRC2012_IDs, one line per val image."""
    lines = path.read_text().splitlines()
    if len(lines) != count:
        raise DatasetError(f"{path}: {len(lines)} lines, but the val folder holds {count} images; "
                           f"one line per val image is expected")
    ids = []
    for number, line in enumerate(lines, 1):
        try:
            ids.append(int(line.strip()))
        except ValueError:
            raise DatasetError(f"{path}:{number}: {line!r} is not an integer ILSVRC2012_ID") from None
    return ids


def _devkit_val(devkit: Path, files: list[Path]) -> list[tuple[Path, str]]:
    truth, meta = devkit / GROUND_TRUTH_NAME, devkit / "meta.mat"
    # Line i labels ILSVRC2012_val_<i>; a gap in the folder would shift every later label.
    for position, path in enumerate(files, 1):
        match = VAL_NAME.fullmatch(path.stem)
        if match and int(match[1]) != position:
            raise DatasetError(f"{path}: in position {position} of the sorted val folder, but line {position} "
                               f"of {truth} labels ILSVRC2012_val_{position:08d}")
    id_to_wnid, _ = parse_meta_mat(meta)
    labelled = []
    for number, (path, index) in enumerate(zip(files, parse_ground_truth(truth, len(files))), 1):
        if index not in id_to_wnid:
            raise DatasetError(f"{truth}:{number}: ILSVRC2012_ID {index} is not one of the "
                               f"leaf classes of {meta}")
        labelled.append((path, id_to_wnid[index]))
    return labelled


def _kaggle_val(root: Path, files: list[Path], known: Synsets) -> list[tuple[Path, str]]:
    path = root / KAGGLE_SOLUTION
    wnids = {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        if [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            raise DatasetError(f"{path}:1: header {','.join(header)!r} is not 'ImageId,PredictionString'")
        for row in reader:
            prediction = row[1].split() if len(row) > 1 else []
            if not prediction:
                raise DatasetError(f"{path}:{reader.line_num}: {','.join(row)!r} has no PredictionString")
            if prediction[0] not in known.words:
                raise DatasetError(f"{path}:{reader.line_num}: unknown wnid {prediction[0]!r} "
                                   f"(not in {known.source})")
            wnids[row[0].strip()] = prediction[0]
    for file in files:
        if file.stem not in wnids:
            raise DatasetError(f"{file}: no row with ImageId {file.stem} in {path}")
    return [(file, wnids[file.stem]) for file in files]


def _folders_val(val_dir: Path, known: Synsets) -> list[tuple[Path, str]]:
    labelled = []
    for wnid in class_folders(val_dir):
        if wnid not in known.words:
            raise DatasetError(f"{val_dir / wnid}: unknown wnid (not in {known.source})")
        labelled += [(path, wnid) for path in image_files(val_dir / wnid)]
    return labelled


def _val(root: Path, known: Synsets) -> tuple[list[tuple[Path, str]], str, dict[str, str | None]]:
    """Every official val image with its wnid, the form the labels came in, and their label_source."""
    val_dir = require_dir(root / "val", "imagenet val")
    # scandir: telling folders from files needs no stat per entry among 50,000 images.
    with os.scandir(val_dir) as entries:
        sorted_into_folders = any(e.is_dir() and not e.name.startswith(".") for e in entries)
    if sorted_into_folders:
        # The folders are the labels: no one file to hash.
        return _folders_val(val_dir, known), "val folders", label_source(root, "val_folders", val_dir, hashed=False)
    files = image_files(val_dir)
    if (devkit := find_devkit(root)) is not None:
        labelled = _devkit_val(devkit, files)  # parsed first: a missing file is reported as such
        return labelled, "devkit", label_source(root, "devkit", devkit / GROUND_TRUTH_NAME)
    if (root / KAGGLE_SOLUTION).is_file():
        return _kaggle_val(root, files, known), "kaggle", label_source(root, "loc_csv", root / KAGGLE_SOLUTION)
    incomplete = "".join(f"; {folder / GROUND_TRUTH_NAME} has no meta.mat beside it"
                         for folder in _devkit_candidates(root))
    raise DatasetError(f"{val_dir}: flat val images, but no labels for them: neither {root / GROUND_TRUTH} "
                       f"(or another */data/{GROUND_TRUTH_NAME} with meta.mat) nor {root / KAGGLE_SOLUTION} "
                       f"exists{incomplete}")


def _keep(labelled: list[tuple[Path, str]], classes: list[str], limit: int) -> Items:
    """The images of the kept classes, at most `limit` per class, labelled by class index."""
    index = {wnid: i for i, wnid in enumerate(classes)}
    taken = dict.fromkeys(classes, 0)
    items: Items = []
    for path, wnid in labelled:
        if wnid in index and not (limit and taken[wnid] >= limit):
            taken[wnid] += 1
            items.append((path, index[wnid]))
    return items


def _train_classes(root: Path, config: ImageNetConfig) -> tuple[list[str], list[str]]:
    """All train wnids, and those kept under limit_classes."""
    wnids = class_folders(require_dir(root / "train", "imagenet train"))
    return wnids, (wnids[:config.limit_classes] if config.limit_classes else wnids)


def _holdout(train_dir: Path, classes: list[str], config: ImageNetConfig) -> tuple[Items, Items]:
    """Train images per class, less `test_per_class` of them held out as the test split."""
    train: Items = []
    test: Items = []
    for label, wnid in enumerate(classes):
        paths = image_files(train_dir / wnid, config.limit_per_class)
        if len(paths) <= config.test_per_class:
            raise DatasetError(f"{train_dir / wnid}: {len(paths)} images, but test_per_class="
                               f"{config.test_per_class} are held out and at least one must remain")
        held, rest = carve(paths, config.seed, wnid, [config.test_per_class])
        test += [(path, label) for path in held]
        train += [(path, label) for path in rest]
    return train, test


def _check_train_wnids(train_dir: Path, wnids: list[str], known: Synsets) -> None:
    for wnid in wnids:
        if wnid not in known.words:
            raise DatasetError(f"{train_dir / wnid}: unknown wnid (not in {known.source})")


def load(config: ImageNetConfig) -> Splits:
    from workers.datasets.images import FileImages  # torch: only where images are read

    root = dataset_root(config.root, "imagenet root")
    all_wnids, classes = _train_classes(root, config)
    synsets = _synsets(root)
    if synsets:
        _check_train_wnids(root / "train", all_wnids, synsets)
    # Without a class list, the train folders are the known wnids.
    known = synsets or Synsets({wnid: wnid for wnid in all_wnids}, str(root / "train"))
    train, held = _holdout(root / "train", classes, config)
    labelled, form, source = _val(root, known)
    val = _keep(labelled, classes, config.limit_per_class)
    if not val:
        raise DatasetError(f"{root / 'val'}: no images of the kept classes {', '.join(classes[:5])}"
                           f"{', ...' if len(classes) > 5 else ''}")
    test, _ = opaque_test_items(held, config.seed)
    # ImageNet's images differ in size; the first one's stands for them, as for imagefolder.
    return Splits(
        train=FileImages([p for p, _ in train], [y for _, y in train]),
        val=FileImages([p for p, _ in val], [y for _, y in val]), test=test,
        num_classes=len(classes), class_names=[known.words.get(w, w) for w in classes],
        image_size=first_image_size(train[0][0]), label_source=source,
        info={"root": config.root, "val_labels": form, "wnids": classes, "val_dropped": len(labelled) - len(val),
              "counts": {"train": len(train), "val": len(val), "test": len(held)}})


def test_labels(config: ImageNetConfig) -> dict[str, int]:
    """The held labels of the test split: for the challenge server only."""
    root = dataset_root(config.root, "imagenet root")
    _, classes = _train_classes(root, config)
    _, held = _holdout(root / "train", classes, config)
    return opaque_test_order(held, config.seed)[1]


def class_names(config: ImageNetConfig) -> list[str]:
    """The kept classes' words (wnids without a class list), without reading the image folders."""
    root = dataset_root(config.root, "imagenet root")
    all_wnids, classes = _train_classes(root, config)
    synsets = _synsets(root)
    if synsets:
        _check_train_wnids(root / "train", all_wnids, synsets)
    words = synsets.words if synsets else {}
    return [words.get(w, w) for w in classes]


def train_size(config: ImageNetConfig) -> int:
    """The train images less the held-out test ones, listed (not read) as `load` lists them."""
    root = dataset_root(config.root, "imagenet root")
    _, classes = _train_classes(root, config)
    return len(_holdout(root / "train", classes, config)[0])
