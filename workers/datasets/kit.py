"""A challenge's participant kit as a test split: what the baselines predict on (issue #14).

A kit folder (written by leaderboard.kit.write_kit) holds images/<image_id>.<ext> under opaque ids,
sample_submission.csv (`image_id,pred_1..`, rows in kit order), classes.csv (id,name,wnid), rules.json and
MANIFEST.sha256 (`<sha256>  <relative path>` per file). A run of the orchestrator that has a challenge on its
dataset predicts on exactly these images, so its baseline and every team are scored on the same inputs by the
same gate, and the predictions are keyed by the kit's ids.

Every dataset's test split (Splits.test) yields (uint8 RGB tensor 3 x H x W, image_id); a kit image decoded
to uint8 RGB is that same tensor (PNG of a rendered split is lossless; a file dataset's JPEG decodes as its
source file does), and the training loop applies the split's own eval transform to it. So one reader serves
every dataset kind and no per-dataset hook is needed; tests/test_baseline_kit.py checks the equality.

Importing this module imports no torch: the split's Dataset is built when asked for.
"""
from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.datasets.base import DatasetError

IMAGES = "images"
SAMPLE_SUBMISSION = "sample_submission.csv"
CLASSES = "classes.csv"
MANIFEST = "MANIFEST.sha256"
_MANIFEST_LINE = re.compile(r"([0-9a-f]{64}) [ *](.+)")  # sha256sum's format, text or binary mode


class KitError(DatasetError):
    """A kit folder that is missing, incomplete or altered; the message names the file and the problem."""


@dataclass(frozen=True)
class Kit:
    folder: Path
    image_ids: list[str]  # in kit order: the order of sample_submission.csv
    paths: list[Path]  # the image file of each id
    manifest_sha256: str  # the SHA-256 of MANIFEST.sha256, as the challenge's kit_sha256 records it


def kit_folder(storage: str | Path, kit: str) -> Path:
    """The kit named by a job (`kit`, relative to the storage root), refused if it would leave the root."""
    relative = Path(kit)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise KitError(f"kit {kit!r}: must be a folder relative to the storage root, without '..'")
    root = Path(storage).expanduser().resolve()
    folder = (root / relative).resolve()
    if not folder.is_relative_to(root):
        raise KitError(f"kit {kit!r}: resolves outside the storage root {root}")
    return folder


def _manifest(folder: Path) -> tuple[dict[str, str], str]:
    path = folder / MANIFEST
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KitError(f"{path}: cannot read the kit's manifest ({exc.strerror or exc})") from None
    digests: dict[str, str] = {}
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        match = _MANIFEST_LINE.fullmatch(line.strip())
        if match is None:
            raise KitError(f"{path}, line {number}: expected '<sha256>  <path>', got {line[:80]!r}")
        digests[match.group(2)] = match.group(1)
    return digests, hashlib.sha256(data).hexdigest()


def _sample_ids(folder: Path) -> list[str]:
    path = folder / SAMPLE_SUBMISSION
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise KitError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not rows or not rows[0] or rows[0][0] != "image_id":
        raise KitError(f"{path}: the header must start with 'image_id'")
    ids = [row[0] for row in rows[1:] if row]
    if len(set(ids)) != len(ids):
        raise KitError(f"{path}: an image id appears twice")
    if not ids:
        raise KitError(f"{path}: lists no image")
    return ids


def read_kit(folder: str | Path) -> Kit:
    """The kit's images in kit order, each checked against the manifest (a kit changed after it was written,
    or half written, is refused: the baseline must predict on the images the teams got)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise KitError(f"kit folder {folder} does not exist")
    digests, manifest_sha256 = _manifest(folder)
    by_id: dict[str, Path] = {}
    images = folder / IMAGES
    if not images.is_dir():
        raise KitError(f"kit folder {folder} has no {IMAGES}/ folder")
    for file in images.iterdir():
        by_id.setdefault(file.stem, file)  # the extension is the format's, the stem the id
    ids, paths = _sample_ids(folder), []
    for image_id in ids:
        path = by_id.get(image_id)
        if path is None:
            raise KitError(f"{folder / IMAGES}: no image for id {image_id!r} of {SAMPLE_SUBMISSION}")
        relative = f"{IMAGES}/{path.name}"
        expected = digests.get(relative)
        if expected is None:
            raise KitError(f"{folder / MANIFEST}: does not list {relative}")
        if hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            raise KitError(f"{path}: its SHA-256 differs from the kit's manifest")
        paths.append(path)
    return Kit(folder, ids, paths, manifest_sha256)


def check_classes(folder: str | Path, class_names: Sequence[str]) -> None:
    """The model's class k must be the kit's class k: classes.csv must list the dataset's classes in its order
    (by name, or by wnid where the dataset names classes by wnid)."""
    path = Path(folder) / CLASSES
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise KitError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(rows) != len(class_names):
        raise KitError(f"{path}: lists {len(rows)} classes, the dataset has {len(class_names)}")
    for k, (row, name) in enumerate(zip(rows, class_names)):
        if str(row.get("id")) != str(k) or name not in (row.get("name"), row.get("wnid")):
            raise KitError(f"{path}: class {k} is {row.get('id')}/{row.get('name')!r}, the dataset's is {name!r}")


def kit_test_split(folder: str | Path, class_names: Sequence[str]) -> tuple[Any, Kit]:
    """The kit as a test split: a torch Dataset of (uint8 RGB 3 x H x W, image_id) in kit order, and the kit."""
    from workers.datasets.images import FileImages

    kit = read_kit(folder)
    check_classes(kit.folder, class_names)
    return FileImages(kit.paths, kit.image_ids), kit


def prediction_split(spec: Any, data: Any, log: Callable[[str], Any] | None = None) -> Any:
    """The split a job writes its test predictions for: its challenge's kit when the job names one
    (JobSpec.kit), else the dataset's own test split. `data`: the job's Splits; `log`: the job's log."""
    if not getattr(spec, "kit", None):
        return data.test
    split, kit = kit_test_split(kit_folder(spec.storage, spec.kit), data.class_names)
    if log is not None:  # provenance (invariant 4): which kit the predictions are for
        log(f"test predictions on the kit {spec.kit}: {len(kit.image_ids)} images, manifest sha256 "
            f"{kit.manifest_sha256}")
    return split
