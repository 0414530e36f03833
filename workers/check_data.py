"""`python -m workers.check_data ROOT [--kind imagenet|imagefolder|voc|coco]`: find the bad files first.

A corrupt file fails a training job hours in; this finds every one of them up front. It walks the
tree, decodes every image once, and lists each file that cannot be read, is empty, is no image at
all, is cut short, holds another format than its extension says (ImageNet's train set has PNG data
in .JPEG files), or is CMYK (ImageNet has those too); grayscale images are noted, not counted as
problems (the loaders convert them). For VOC and COCO it also checks that every listed image and
annotation exists and that the annotation's recorded image size matches the file.

Exit status: 0 clean, 1 problems found, 2 the root is missing or its layout unknown. Torch-free:
Pillow decodes, JPEGs in draft mode (libjpeg's DCT scaling: every coefficient is still read, so a
truncated file is still caught, but the inverse transform runs at 1/8 scale).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from workers.datasets.base import DatasetError
from workers.datasets.decoding import content_problem, decode_problem, expected_format, sniff_format

KINDS = ("imagenet", "imagefolder", "voc", "coco")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "F")
WNID = re.compile(r"n\d{8}")
COCO_JSON = re.compile(r"(?:instances|image_info|person_keypoints|captions)_(.+)\.json")
EXIT_CLEAN, EXIT_PROBLEMS, EXIT_BAD_ROOT = 0, 1, 2


class BadRoot(Exception):
    """The root is not a folder, or its layout is none of the known kinds."""


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    kind: str  # e.g. "truncated", "wrong format", "missing annotation"
    detail: str
    note: bool = False  # worth knowing, not a problem (grayscale, a worker without test labels)

    def line(self) -> str:
        # Severity and kind first, in columns: `grep '^problem  truncated'` picks one kind out.
        return f"{'note' if self.note else 'problem':<8} {self.kind:<22} {self.path}: {self.detail}"


@dataclass
class Plan:
    """What to check in a tree: the images to decode, the sizes annotations claim, the findings so far."""

    kind: str
    images: list[str] = field(default_factory=list)
    sizes: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # path -> (width, height, where)
    findings: list[Finding] = field(default_factory=list)


# --- one image -------------------------------------------------------------------------------------

def check_image(path: str) -> tuple[list[Finding], tuple[int, int] | None]:
    """Every problem of one image file, and its (width, height) when it decodes."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        return [Finding(path, "unreadable", exc.strerror or str(exc))], None
    problem = content_problem(path, data)
    if problem:
        return [Finding(path, "empty" if not data else "not an image", problem)], None
    findings = []
    found, promised = sniff_format(data[:16]), expected_format(path)
    if promised and found != promised:
        findings.append(Finding(path, "wrong format", f"{found} data in a {Path(path).suffix} file"))
    size, mode, error = _decode(data)
    if error is not None:
        problem = decode_problem(path, data, error)
        return findings + [Finding(path, problem.split(" ", 1)[0], problem)], None  # "truncated" or "corrupt"
    if mode == "CMYK":
        findings.append(Finding(path, "CMYK", f"CMYK {found}: converted to RGB on load, colours may shift"))
    elif mode in GRAYSCALE_MODES:
        findings.append(Finding(path, "grayscale", f"mode {mode}: read as RGB with three equal channels", note=True))
    return findings, size


def _decode(data: bytes) -> tuple[tuple[int, int] | None, str | None, Exception | None]:
    """(size, mode, None) when the bytes decode fully, else (None, None, the decoder's exception)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            size, mode = image.size, image.mode
            if image.format == "JPEG":
                image.draft(mode if mode in ("RGB", "L") else None, (1, 1))  # decode at 1/8 scale
            image.load()
        return size, mode, None
    # Pillow raises OSError, SyntaxError, ValueError, Image.DecompressionBombError... on bad data.
    except Exception as exc:  # noqa: BLE001 - every way a file can fail to decode is a finding
        return None, None, exc


# --- layouts ------------------------------------------------------------------------------------------

def detect_kind(root: Path) -> str:
    if not root.is_dir():
        raise BadRoot(f"{root}: no such folder")
    if (root / "JPEGImages").is_dir() or _voc_bases(root):
        return "voc"
    if (root / "annotations").is_dir() and any(COCO_JSON.fullmatch(p.name) for p in (root / "annotations").iterdir()):
        return "coco"
    train = root / "train"
    if train.is_dir():
        folders = [e.name for e in os.scandir(train) if e.is_dir() and not e.name.startswith(".")]
        if folders and all(WNID.fullmatch(name) for name in folders) and (root / "val").is_dir():
            return "imagenet"
        if folders:
            return "imagefolder"
    raise BadRoot(f"{root}: not an ImageNet, imagefolder, VOC or COCO tree (no train/<class>/, "
                  f"VOC*/JPEGImages/ or annotations/instances_*.json); pass --kind to say which")


def _image_files(top: Path) -> Iterator[str]:
    """Every image file under `top` (by extension, any case), dot files and folders skipped."""
    for folder, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                yield os.path.join(folder, name)


def _layout_finding(root: Path, check: Callable[[], object]) -> list[Finding]:
    # The loaders' own checks: a tree that passes here loads; their messages name the file.
    try:
        check()
    except DatasetError as exc:
        return [Finding(str(root), "layout", str(exc))]
    return []


def plan_imagefolder(root: Path) -> Plan:
    from workers.datasets import imagefolder

    if not (root / "train").is_dir():
        raise BadRoot(f"{root}: no train/ folder, so not an imagefolder tree")
    config = imagefolder.ImageFolderConfig(root=str(root))
    return Plan("imagefolder", list(_image_files(root)),
                findings=_layout_finding(root, lambda: imagefolder.test_labels(config)))


def plan_imagenet(root: Path) -> Plan:
    from workers.datasets import imagenet

    if not (root / "train").is_dir():
        raise BadRoot(f"{root}: no train/ folder, so not an ImageNet tree")

    def labels() -> None:
        all_wnids, _ = imagenet._train_classes(root, imagenet.ImageNetConfig(root=str(root)))
        known = imagenet._synsets(root) or imagenet.Synsets({w: w for w in all_wnids}, str(root / "train"))
        imagenet._val(root, known)

    return Plan("imagenet", list(_image_files(root)), findings=_layout_finding(root, labels))


def _voc_bases(root: Path) -> list[Path]:
    """The VOC<year> folders under a VOCdevkit root (or the root itself when it is one)."""
    if (root / "JPEGImages").is_dir():
        return [root]
    return sorted(p for p in root.glob("VOC*") if (p / "JPEGImages").is_dir())


def plan_voc(root: Path) -> Plan:
    bases = _voc_bases(root)
    if not bases:
        raise BadRoot(f"{root}: no JPEGImages/ in it or in a VOC*/ folder under it, so not a VOC tree")
    plan = Plan("voc")
    for base in bases:
        plan.images += list(_image_files(base / "JPEGImages"))
        plan.findings += _voc_lists(base)
        plan.findings += _voc_annotations(base, plan.sizes)
    return plan


def _voc_lists(base: Path) -> list[Finding]:
    """Every id in the main image sets has its image, and (but for test) its annotation."""
    findings = []
    for listing in sorted((base / "ImageSets" / "Main").glob("*.txt")):
        if "_" in listing.stem:  # per-class lists (aeroplane_train.txt) repeat the main ones
            continue
        for number, line in enumerate(listing.read_text().splitlines(), 1):
            if not line.strip():
                continue
            image_id = line.split()[0]
            where = f"{listing}:{number}"
            if not (base / "JPEGImages" / f"{image_id}.jpg").is_file():
                findings.append(Finding(where, "missing image", f"{base / 'JPEGImages' / image_id}.jpg does not exist"))
            if not (base / "Annotations" / f"{image_id}.xml").is_file():
                # A worker's copy may lack the test annotations on purpose: only the server scores them.
                findings.append(Finding(where, "missing annotation", f"{base / 'Annotations' / image_id}.xml does not "
                                        "exist", note=listing.stem == "test"))
    return findings


def _voc_annotations(base: Path, sizes: dict[str, tuple[int, int, str]]) -> list[Finding]:
    """Each annotation parses, names its own image, and records a size to compare with the file's."""
    findings = []
    folder = base / "Annotations"
    for path in sorted(folder.glob("*.xml")) if folder.is_dir() else []:
        try:
            tree = ET.parse(path).getroot()
        except ET.ParseError as exc:
            findings.append(Finding(str(path), "bad annotation", f"not valid XML: {exc}"))
            continue
        image = base / "JPEGImages" / f"{path.stem}.jpg"
        named = (tree.findtext("filename") or "").strip()
        if named and named != image.name:
            findings.append(Finding(str(path), "mislabelled annotation", f"names {named!r}, not {image.name!r}"))
        if not image.is_file():
            findings.append(Finding(str(path), "missing image", f"{image} does not exist"))
            continue
        try:
            sizes[str(image)] = (int(tree.findtext("size/width") or ""), int(tree.findtext("size/height") or ""),
                                 str(path))
        except ValueError:
            pass  # the loaders do not read <size>; nothing to compare against
    return findings


def plan_coco(root: Path) -> Plan:
    folder = root / "annotations"
    files = sorted(p for p in folder.glob("*.json") if COCO_JSON.fullmatch(p.name)) if folder.is_dir() else []
    if not files:
        raise BadRoot(f"{root}: no annotations/instances_*.json or image_info_*.json, so not a COCO tree")
    plan = Plan("coco")
    seen: set[str] = set()
    for path in files:
        plan.findings += _coco_file(root, path, plan, seen)
    return plan


def _coco_images_folder(root: Path, split: str) -> Path | None:
    # image_info_test-dev2017.json lists images of test2017/.
    for name in (split, split.replace("-dev", ""), f"images/{split}"):
        if (root / name).is_dir():
            return root / name
    return None


def _coco_file(root: Path, path: Path, plan: Plan, seen: set[str]) -> list[Finding]:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [Finding(str(path), "bad annotation", f"not valid JSON: {exc}")]
    split = COCO_JSON.fullmatch(path.name)[1]
    folder = _coco_images_folder(root, split)
    if folder is None:
        return [Finding(str(path), "missing image", f"no image folder {root / split} for its images")]
    findings, ids = [], set()
    for entry in data.get("images", []):
        ids.add(entry.get("id"))
        image = folder / str(entry.get("file_name", ""))
        if not image.is_file():
            findings.append(Finding(str(path), "missing image", f"image id {entry.get('id')}: {image} does not exist"))
        elif str(image) not in seen:
            seen.add(str(image))
            plan.images.append(str(image))
            if isinstance(entry.get("width"), int) and isinstance(entry.get("height"), int):
                plan.sizes[str(image)] = (entry["width"], entry["height"], str(path))
    categories = {c.get("id") for c in data.get("categories", [])}
    for ann in data.get("annotations", []):
        if ann.get("image_id") not in ids:
            findings.append(Finding(str(path), "bad annotation", f"annotation {ann.get('id')}: image_id "
                                    f"{ann.get('image_id')} is not in its images"))
        elif categories and ann.get("category_id") not in categories:
            findings.append(Finding(str(path), "bad annotation", f"annotation {ann.get('id')}: category_id "
                                    f"{ann.get('category_id')} is not in its categories"))
    return findings


PLANNERS: dict[str, Callable[[Path], Plan]] = {
    "imagenet": plan_imagenet, "imagefolder": plan_imagefolder, "voc": plan_voc, "coco": plan_coco}


# --- running ------------------------------------------------------------------------------------------

class Progress:
    """A bar redrawn in place on a terminal; elsewhere (a log, a pipe) a plain line every few seconds."""

    def __init__(self, total: int, stream: TextIO, every_s: float = 5.0):
        self.total, self.stream, self.every_s = total, stream, every_s
        self.tty = stream.isatty()
        self.start = self.last = time.monotonic()

    def update(self, done: int, problems: int) -> None:
        now = time.monotonic()
        if done < self.total and now - self.last < (0.1 if self.tty else self.every_s):
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        text = f"{done}/{self.total} files, {problems} problems, {rate:,.0f} files/s"
        if self.tty:
            filled = int(30 * done / max(self.total, 1))
            self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {text}" + ("\n" if done >= self.total else ""))
        else:
            self.stream.write(f"checked {text}\n")
        self.stream.flush()


def _workers() -> int:
    # The cores this process may use, not the machine's: a container or taskset gives fewer.
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def decode_all(paths: Sequence[str], workers: int, progress: Progress) -> Iterator[tuple[str, list[Finding],
                                                                                         tuple[int, int] | None]]:
    """(path, findings, size) for every image, decoded by `workers` processes (in this one if 1)."""
    chunk = max(1, min(256, len(paths) // (workers * 8) or 1))
    problems = 0
    if workers <= 1 or len(paths) < 64:  # a pool's start-up costs more than it saves on a handful
        results: Iterable = map(check_image, paths)
        pool = None
    else:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(check_image, paths, chunksize=chunk)
    try:
        for done, (path, (findings, size)) in enumerate(zip(paths, results), 1):
            problems += sum(not f.note for f in findings)
            progress.update(done, problems)
            yield path, findings, size
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def check(root: Path, kind: str | None = None, workers: int = 0, progress_stream: TextIO = sys.stderr
          ) -> tuple[Plan, list[Finding], float]:
    """Every finding in the tree, sorted by path, and the seconds the decoding took."""
    if not root.is_dir():
        raise BadRoot(f"{root}: no such folder")
    kind = kind or detect_kind(root)
    plan = PLANNERS[kind](root)
    findings = list(plan.findings)
    start = time.perf_counter()
    progress = Progress(len(plan.images), progress_stream)
    for path, found, size in decode_all(plan.images, workers or _workers(), progress):
        findings += found
        claimed = plan.sizes.get(path)
        if size and claimed and size != claimed[:2]:
            findings.append(Finding(path, "size mismatch", f"{claimed[2]} says {claimed[0]}x{claimed[1]}, "
                                    f"the image is {size[0]}x{size[1]}"))
    return plan, sorted(findings), time.perf_counter() - start


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    parser = argparse.ArgumentParser(
        prog="python -m workers.check_data",
        description="Decode every image of a dataset tree and list the unreadable, truncated, empty, "
                    "mislabelled-format and CMYK files, and, for VOC and COCO, missing or inconsistent "
                    "annotations. Exit status: 0 clean, 1 problems, 2 bad root.")
    parser.add_argument("root", type=Path, help="the dataset's root folder")
    parser.add_argument("--kind", choices=KINDS, default=None, help="the layout (default: told from the tree)")
    parser.add_argument("--workers", type=int, default=0, help="decoding processes (default: one per core)")
    args = parser.parse_args(argv)
    try:
        plan, findings, seconds = check(args.root, args.kind, args.workers, err)
    except BadRoot as exc:
        print(f"error: {exc}", file=err)
        return EXIT_BAD_ROOT
    for finding in findings:
        print(finding.line(), file=out)
    problems = sum(not f.note for f in findings)
    n = len(plan.images)
    print(f"{plan.kind} tree {args.root}: {n} images decoded in {seconds:.2f} s "
          f"({1000 * seconds / max(n, 1):.2f} s per 1000 files); {problems} problems, "
          f"{len(findings) - problems} notes", file=out)
    return EXIT_PROBLEMS if problems else EXIT_CLEAN


if __name__ == "__main__":
    sys.exit(main())
