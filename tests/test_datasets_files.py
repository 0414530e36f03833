"""The on-disk loaders (imagefolder, imagenet) on miniature trees written in the real layouts.

Every image is a flat colour that names its class, so a label can be checked against the
pixels it comes with, not only against the loader's own bookkeeping.
"""
from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat
from torchvision.io import write_jpeg, write_png

from workers.datasets import DatasetError, dataset_config, held_test_labels, imagefolder, imagenet, load_dataset
from workers.datasets.base import Splits
from workers.datasets.images import FileImages

WNIDS = ["n01440764", "n01443537", "n01484850"]  # sorted: the class order
WORDS = {"n01440764": "tench, Tinca tinca", "n01443537": "goldfish, Carassius auratus",
         "n01484850": "great white shark, white shark"}
META_ID = {"n01484850": 1, "n01440764": 2, "n01443537": 3}  # devkit ids need not follow wnid order
VAL_WNIDS = ["n01484850", "n01440764", "n01443537", "n01443537", "n01484850",
             "n01440764", "n01440764", "n01484850", "n01443537"]  # the wnid of ILSVRC2012_val_0000000<i+1>
CLASSES = ["cat", "dog", "fox"]
COLOURS = {"n01440764": (220, 30, 30), "n01443537": (30, 220, 30), "n01484850": (30, 30, 220),
           "cat": (220, 220, 30), "dog": (30, 220, 220), "fox": (220, 30, 220)}
SUFFIXES = (".jpg", ".jpeg", ".png", ".JPEG")

# torchvision 0.29 warns on every encode and decode that its image io is deprecated (for
# torchcodec); thousands of copies would bury the report.
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")


def write_image(path: Path, name: str) -> None:
    image = torch.tensor(COLOURS[name], dtype=torch.uint8).view(3, 1, 1).expand(3, 32, 40).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    (write_png if path.suffix.lower() == ".png" else write_jpeg)(image, str(path))


def colour_name(image: torch.Tensor, names: list[str]) -> str:
    mean = image.float().mean(dim=(1, 2))
    return min(names, key=lambda n: float((mean - torch.tensor(COLOURS[n], dtype=torch.float)).norm()))


def assert_labels_match_pixels(dataset: FileImages, names: list[str]) -> None:
    for image, label in dataset:
        assert image.shape == (3, 32, 40) and image.dtype == torch.uint8
        assert names[label] == colour_name(image, names)


def assert_opaque_test(splits: Splits, labels: dict[str, int], names: list[str]) -> None:
    ids = [target for _, target in splits.test]
    assert ids == [f"test_{i:06d}" for i in range(len(ids))]
    assert sorted(labels) == ids
    for image, image_id in splits.test:
        assert names[labels[image_id]] == colour_name(image, names)


# --- ImageNet trees -------------------------------------------------------------------------

def imagenet_tree(root: Path, per_class: int = 6) -> Path:
    for wnid in WNIDS:
        for k in range(1, per_class + 1):
            write_image(root / "train" / wnid / f"{wnid}_{k}.JPEG", wnid)
    for i, wnid in enumerate(VAL_WNIDS, 1):
        write_image(root / "val" / f"ILSVRC2012_val_{i:08d}.JPEG", wnid)
    return root


def write_meta(path: Path, fields: tuple[str, ...] = ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children",
                                                      "children", "wordnet_height", "num_train_images")) -> None:
    leaves = [(META_ID[w], w, WORDS[w], "a fish", 0, np.zeros((1, 0)), 0, 6) for w in WNIDS]
    inner = [(4, "n02512053", "fish", "cold-blooded vertebrates", 3, np.array([1, 2, 3]), 1, 0)]
    rows = [tuple(row[i] for i, _ in enumerate(fields)) for row in leaves + inner]
    # As in the real file: a column of structs, leaves first, then the inner synsets.
    synsets = np.array(rows, dtype=[(f, "O") for f in fields]).reshape(-1, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"synsets": synsets})


def write_devkit(root: Path) -> None:
    write_meta(root / imagenet.META_MAT)
    (root / imagenet.GROUND_TRUTH).write_text("".join(f"{META_ID[w]}\n" for w in VAL_WNIDS))


def kaggle_rows() -> list[str]:
    # The real file is in no particular order, so these run backwards.
    return [f"ILSVRC2012_val_{i:08d},{w} 12 4 36 30 {w} 1 1 20 20" for i, w in enumerate(VAL_WNIDS, 1)][::-1]


def write_kaggle(root: Path, rows: list[str] | None = None) -> None:
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows or kaggle_rows()) + "\n")
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {WORDS[w]}\n" for w in WNIDS))


def sort_val_into_folders(root: Path) -> None:
    for i, wnid in enumerate(VAL_WNIDS, 1):
        name = f"ILSVRC2012_val_{i:08d}.JPEG"
        (root / "val" / wnid).mkdir(exist_ok=True)
        (root / "val" / name).rename(root / "val" / wnid / name)


def labels_of(dataset: FileImages) -> list[int]:
    return list(dataset.targets)


@pytest.mark.parametrize("form", ["devkit", "kaggle", "val folders"])
def test_imagenet_forms(tmp_path: Path, form: str) -> None:
    root = imagenet_tree(tmp_path)
    {"devkit": write_devkit, "kaggle": write_kaggle, "val folders": sort_val_into_folders}[form](root)
    config = imagenet.ImageNetConfig(root=str(root), test_per_class=2)
    splits = imagenet.load(config)
    assert splits.num_classes == 3
    assert splits.class_names == (WNIDS if form == "val folders" else [WORDS[w] for w in WNIDS])
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 9, 6)
    assert splits.image_size == 40 and splits.info["val_labels"] == form
    written = [WNIDS.index(w) for w in VAL_WNIDS]
    assert labels_of(splits.val) == (sorted(written) if form == "val folders" else written)
    assert_labels_match_pixels(splits.val, WNIDS)
    assert_labels_match_pixels(splits.train, WNIDS)
    assert_opaque_test(splits, imagenet.test_labels(config), WNIDS)


def test_imagenet_holdout_is_taken_from_train_per_class_by_seed(tmp_path: Path) -> None:
    root = imagenet_tree(tmp_path)
    write_devkit(root)
    every = {str(p) for p in (root / "train").glob("*/*.JPEG")}
    held = {}
    for seed in (0, 0, 1):
        splits = imagenet.load(imagenet.ImageNetConfig(root=str(root), test_per_class=2, seed=seed))
        train, test = set(splits.train.paths), set(splits.test.paths)
        assert not train & test and train | test == every
        assert sorted(labels_of(splits.train)) == [0] * 4 + [1] * 4 + [2] * 4
        assert held.setdefault(seed, test) == test
    assert held[0] != held[1]


def test_imagenet_val_folders_take_names_from_synset_mapping(tmp_path: Path) -> None:
    root = imagenet_tree(tmp_path)
    sort_val_into_folders(root)
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {WORDS[w]}\n" for w in WNIDS))
    splits = imagenet.load(imagenet.ImageNetConfig(root=str(root), test_per_class=2))
    assert splits.class_names == [WORDS[w] for w in WNIDS]


def test_imagenet_limit_classes_drops_other_val_images(tmp_path: Path) -> None:
    root = imagenet_tree(tmp_path)
    write_devkit(root)
    config = imagenet.ImageNetConfig(root=str(root), test_per_class=2, limit_classes=2)
    splits = imagenet.load(config)
    assert splits.num_classes == 2 and splits.class_names == [WORDS[w] for w in WNIDS[:2]]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 6, 4)
    assert splits.info["val_dropped"] == 3
    assert_labels_match_pixels(splits.val, WNIDS)
    labels = imagenet.test_labels(config)
    assert set(labels.values()) == {0, 1}
    assert_opaque_test(splits, labels, WNIDS)


def test_imagenet_limit_per_class_caps_train_and_val(tmp_path: Path) -> None:
    root = imagenet_tree(tmp_path)
    write_kaggle(root)
    config = imagenet.ImageNetConfig(root=str(root), test_per_class=1, limit_per_class=2)
    splits = imagenet.load(config)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3, 6, 3)
    assert {Path(p).stem.split("_")[1] for p in splits.train.paths + splits.test.paths} == {"1", "2"}
    assert sorted(labels_of(splits.val)) == [0, 0, 1, 1, 2, 2]
    assert_opaque_test(splits, imagenet.test_labels(config), WNIDS)


def test_imagenet_no_val_image_of_the_kept_classes(tmp_path: Path) -> None:
    root = imagenet_tree(tmp_path)
    sort_val_into_folders(root)
    shutil.rmtree(root / "val" / WNIDS[0])
    with pytest.raises(DatasetError, match=re.escape(str(root / "val"))):
        imagenet.load(imagenet.ImageNetConfig(root=str(root), test_per_class=2, limit_classes=1))


# Each breaks a valid devkit-form tree and returns what the error message must name.

def _remove_root(root: Path) -> str:
    shutil.rmtree(root)
    return str(root)


def _remove_train(root: Path) -> str:
    shutil.rmtree(root / "train")
    return str(root / "train")


def _empty_train(root: Path) -> str:
    shutil.rmtree(root / "train")
    (root / "train").mkdir()
    return f"{root / 'train'}: no class folders"


def _class_without_images(root: Path) -> str:
    folder = root / "train" / WNIDS[1]
    for path in folder.iterdir():
        path.unlink()
    (folder / "readme.txt").write_text("not an image")
    return f"{folder}: no images"


def _class_too_small_for_holdout(root: Path) -> str:
    for path in sorted((root / "train" / WNIDS[2]).iterdir())[1:]:
        path.unlink()
    return f"{root / 'train' / WNIDS[2]}: 1 images"


def _train_wnid_not_in_meta(root: Path) -> str:
    write_image(root / "train" / "n09999999" / "x.JPEG", WNIDS[0])
    return f"{root / 'train' / 'n09999999'}: unknown wnid (not in {root / imagenet.META_MAT})"


def _remove_val(root: Path) -> str:
    shutil.rmtree(root / "val")
    return str(root / "val")


def _remove_devkit(root: Path) -> str:
    shutil.rmtree(root / "ILSVRC2012_devkit_t12")
    return str(root / imagenet.GROUND_TRUTH)


def _ground_truth_too_long(root: Path) -> str:
    with open(root / imagenet.GROUND_TRUTH, "a") as f:
        f.write("1\n")
    return f"{root / imagenet.GROUND_TRUTH}: 10 lines, but the val folder holds 9 images"


def _ground_truth_not_integer(root: Path) -> str:
    lines = (root / imagenet.GROUND_TRUTH).read_text().splitlines()
    lines[2] = "three"
    (root / imagenet.GROUND_TRUTH).write_text("\n".join(lines) + "\n")
    return f"{root / imagenet.GROUND_TRUTH}:3: 'three' is not an integer"


def _ground_truth_inner_synset(root: Path) -> str:
    lines = (root / imagenet.GROUND_TRUTH).read_text().splitlines()
    lines[4] = "4"  # the inner synset "fish": not a class
    (root / imagenet.GROUND_TRUTH).write_text("\n".join(lines) + "\n")
    return f"{root / imagenet.GROUND_TRUTH}:5: ILSVRC2012_ID 4 is not one of the leaf classes"


def _val_image_missing(root: Path) -> str:
    # Same count, but ILSVRC2012_val_00000002 is gone: every later line would label the wrong image.
    (root / "val" / "ILSVRC2012_val_00000002.JPEG").rename(root / "val" / "ILSVRC2012_val_00000099.JPEG")
    return f"{root / 'val' / 'ILSVRC2012_val_00000003.JPEG'}: in position 2"


def _remove_meta(root: Path) -> str:
    (root / imagenet.META_MAT).unlink()
    return f"{root / imagenet.META_MAT}: file does not exist"


def _meta_without_num_children(root: Path) -> str:
    write_meta(root / imagenet.META_MAT, fields=("ILSVRC2012_ID", "WNID", "words"))
    return f"{root / imagenet.META_MAT}: not a devkit meta.mat"


def _meta_garbage(root: Path) -> str:
    (root / imagenet.META_MAT).write_bytes(b"MATLAB? no" * 20)
    return f"{root / imagenet.META_MAT}: not a devkit meta.mat"


def _to_kaggle(root: Path, rows: list[str] | None = None) -> Path:
    shutil.rmtree(root / "ILSVRC2012_devkit_t12")
    write_kaggle(root, rows)
    return root / "LOC_val_solution.csv"


def _kaggle_unknown_wnid(root: Path) -> str:
    rows = kaggle_rows()
    rows[3] = rows[3].split(",")[0] + ",n09999999 1 2 3 4"
    return f"{_to_kaggle(root, rows)}:5: unknown wnid 'n09999999' (not in {root / 'LOC_synset_mapping.txt'})"


def _kaggle_row_missing(root: Path) -> str:
    _to_kaggle(root, [row for row in kaggle_rows() if not row.startswith("ILSVRC2012_val_00000004")])
    return f"{root / 'val' / 'ILSVRC2012_val_00000004.JPEG'}: no row with ImageId ILSVRC2012_val_00000004"


def _kaggle_bad_header(root: Path) -> str:
    csv = _to_kaggle(root)
    csv.write_text(csv.read_text().replace("ImageId,PredictionString", "id,label"))
    return f"{csv}:1: header 'id,label'"


def _kaggle_empty_prediction(root: Path) -> str:
    rows = kaggle_rows()
    rows[0] = rows[0].split(",")[0] + ","
    return f"{_to_kaggle(root, rows)}:2: "


def _kaggle_bad_mapping_line(root: Path) -> str:
    _to_kaggle(root)
    mapping = root / "LOC_synset_mapping.txt"
    mapping.write_text(mapping.read_text().replace(f"{WNIDS[1]} ", "goldfish "))
    return f"{mapping}:2: 'goldfish goldfish, Carassius auratus' does not start with a wnid"


def _val_folder_unknown_wnid(root: Path) -> str:
    sort_val_into_folders(root)
    write_image(root / "val" / "n09999999" / "x.JPEG", WNIDS[0])
    return f"{root / 'val' / 'n09999999'}: unknown wnid"


def _val_folder_empty(root: Path) -> str:
    sort_val_into_folders(root)
    shutil.rmtree(root / "val" / WNIDS[2])
    (root / "val" / WNIDS[2]).mkdir()
    return f"{root / 'val' / WNIDS[2]}: no images"


IMAGENET_BREAKS: list[Callable[[Path], str]] = [
    _remove_root, _remove_train, _empty_train, _class_without_images, _class_too_small_for_holdout,
    _train_wnid_not_in_meta, _remove_val, _remove_devkit, _ground_truth_too_long, _ground_truth_not_integer,
    _ground_truth_inner_synset, _val_image_missing, _remove_meta, _meta_without_num_children, _meta_garbage,
    _kaggle_unknown_wnid, _kaggle_row_missing, _kaggle_bad_header, _kaggle_empty_prediction,
    _kaggle_bad_mapping_line, _val_folder_unknown_wnid, _val_folder_empty]


@pytest.mark.parametrize("break_tree", IMAGENET_BREAKS, ids=lambda f: f.__name__.strip("_"))
def test_imagenet_errors_name_the_path(tmp_path: Path, break_tree: Callable[[Path], str]) -> None:
    root = imagenet_tree(tmp_path / "imagenet")
    write_devkit(root)
    expected = break_tree(root)
    with pytest.raises(DatasetError, match=re.escape(expected)):
        imagenet.load(imagenet.ImageNetConfig(root=str(root), test_per_class=2))


# --- imagefolder trees ----------------------------------------------------------------------

def imagefolder_tree(root: Path, counts: dict[str, int]) -> Path:
    """root/<split>/<class>/ with counts[split] images per class, in every accepted suffix."""
    for split, n in counts.items():
        for name in CLASSES:
            for k in range(n):
                write_image(root / split / name / f"{name}_{k:02d}{SUFFIXES[k % len(SUFFIXES)]}", name)
    # Neither may be taken for an image: the dot file would not even decode.
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    (root / "train" / "cat" / "._cat_00.jpg").write_bytes(b"\0\5\26\7")
    return root


def test_imagefolder_carves_val_and_test_out_of_train(tmp_path: Path) -> None:
    root = imagefolder_tree(tmp_path, {"train": 10})
    config = imagefolder.ImageFolderConfig(root=str(root), val_fraction=0.2, test_fraction=0.2)
    splits = imagefolder.load(config)
    assert splits.num_classes == 3 and splits.class_names == CLASSES and splits.image_size == 40
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 6, 6)
    assert sorted(labels_of(splits.val)) == [0, 0, 1, 1, 2, 2]
    every = {str(p) for p in (root / "train").glob("*/[!.]*_*")}
    parts = [set(splits.train.paths), set(splits.val.paths), set(splits.test.paths)]
    assert set.union(*parts) == every and sum(map(len, parts)) == len(every)
    assert_labels_match_pixels(splits.train, CLASSES)
    assert_labels_match_pixels(splits.val, CLASSES)
    assert_opaque_test(splits, imagefolder.test_labels(config), CLASSES)


def test_imagefolder_carving_is_seeded(tmp_path: Path) -> None:
    root = imagefolder_tree(tmp_path, {"train": 10})
    val = [imagefolder.load(imagefolder.ImageFolderConfig(root=str(root), seed=s)).val.paths for s in (0, 0, 1)]
    assert val[0] == val[1] != val[2]


def test_imagefolder_with_val_and_test_folders(tmp_path: Path) -> None:
    root = imagefolder_tree(tmp_path, {"train": 4, "val": 2, "test": 3})
    config = imagefolder.ImageFolderConfig(root=str(root))
    splits = imagefolder.load(config)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 6, 9)
    assert all("/train/" in p for p in splits.train.paths)
    assert all("/test/" in p for p in splits.test.paths)
    assert_labels_match_pixels(splits.val, CLASSES)
    assert_opaque_test(splits, imagefolder.test_labels(config), CLASSES)


def test_imagefolder_with_val_folder_carves_only_test(tmp_path: Path) -> None:
    root = imagefolder_tree(tmp_path, {"train": 10, "val": 2})
    config = imagefolder.ImageFolderConfig(root=str(root), test_fraction=0.3)
    splits = imagefolder.load(config)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (21, 6, 9)
    assert all("/val/" in p for p in splits.val.paths)
    assert_opaque_test(splits, imagefolder.test_labels(config), CLASSES)


def test_imagefolder_limits_and_image_size(tmp_path: Path) -> None:
    root = imagefolder_tree(tmp_path, {"train": 10, "val": 3})
    config = imagefolder.ImageFolderConfig(root=str(root), test_fraction=0.2, limit_classes=2, limit_per_class=5,
                                           image_size=64)
    splits = imagefolder.load(config)
    assert splits.class_names == CLASSES[:2] and splits.num_classes == 2 and splits.image_size == 64
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 6, 2)
    taken = {Path(p).stem for p in splits.train.paths + splits.test.paths}
    assert taken == {f"{c}_{k:02d}" for c in CLASSES[:2] for k in range(5)}
    labels = imagefolder.test_labels(config)
    assert set(labels.values()) <= {0, 1}
    assert_opaque_test(splits, labels, CLASSES)


def _bad_first_image(root: Path) -> str:
    for path in (root / "train" / "cat").glob("cat_*"):
        path.write_bytes(b"not a jpeg")
    return f"{root / 'train' / 'cat'}"


def _folder_remove_root(root: Path) -> str:
    shutil.rmtree(root)
    return f"imagefolder root: folder {root} does not exist"


def _folder_remove_train(root: Path) -> str:
    shutil.rmtree(root / "train")
    return f"imagefolder train: folder {root / 'train'} does not exist"


def _folder_no_classes(root: Path) -> str:
    shutil.rmtree(root / "train")
    (root / "train").mkdir()
    (root / "train" / "loose.jpg").write_bytes(b"")
    return f"{root / 'train'}: no class folders"


def _folder_class_without_images(root: Path) -> str:
    (root / "train" / "emu").mkdir()
    return f"{root / 'train' / 'emu'}: no images"


def _folder_unknown_val_class(root: Path) -> str:
    write_image(root / "val" / "cat" / "a.jpg", "cat")
    write_image(root / "val" / "wolf" / "a.jpg", "dog")
    return f"{root / 'val' / 'wolf'}: class folder not in {root / 'train'}"


def _folder_val_without_classes(root: Path) -> str:
    (root / "val").mkdir()
    return f"{root / 'val'}: no class folders"


def _folder_fraction_too_small(root: Path) -> str:
    return f"{root / 'test'} does not exist and test_fraction=0.01 carves no image"


def _folder_class_too_small(root: Path) -> str:
    for path in sorted((root / "train" / "dog").glob("dog_*"))[2:]:
        path.unlink()
    return f"{root / 'train' / 'dog'}: 2 images leave none for training"


@pytest.mark.parametrize("break_tree, options", [
    pytest.param(_bad_first_image, {}, id="bad_first_image"),
    pytest.param(_folder_remove_root, {}, id="remove_root"),
    pytest.param(_folder_remove_train, {}, id="remove_train"),
    pytest.param(_folder_no_classes, {}, id="no_classes"),
    pytest.param(_folder_class_without_images, {}, id="class_without_images"),
    pytest.param(_folder_unknown_val_class, {}, id="unknown_val_class"),
    pytest.param(_folder_val_without_classes, {}, id="val_without_classes"),
    pytest.param(_folder_fraction_too_small, {"test_fraction": 0.01}, id="fraction_too_small"),
    pytest.param(_folder_class_too_small, {"val_fraction": 0.3, "test_fraction": 0.3}, id="class_too_small"),
])
def test_imagefolder_errors_name_the_path(tmp_path: Path, break_tree: Callable[[Path], str], options: dict) -> None:
    root = imagefolder_tree(tmp_path / "tree", {"train": 4})
    expected = break_tree(root)
    # A quarter of 4 images is one: every carved split gets an image unless the case says otherwise.
    fractions = {"val_fraction": 0.25, "test_fraction": 0.25}
    with pytest.raises(DatasetError, match=re.escape(expected)):
        imagefolder.load(imagefolder.ImageFolderConfig(root=str(root), **{**fractions, **options}))


# --- registry and options -------------------------------------------------------------------

def test_registry_loads_both_and_holds_their_test_labels(tmp_path: Path) -> None:
    folder = imagefolder_tree(tmp_path / "folder", {"train": 5})
    net = imagenet_tree(tmp_path / "imagenet")
    write_devkit(net)
    for name, options, names in [("imagefolder", {"root": str(folder), "seed": 3}, CLASSES),
                                 ("imagenet", {"root": str(net), "seed": 3, "test_per_class": 1}, WNIDS)]:
        splits = load_dataset(name, options)
        assert_opaque_test(splits, held_test_labels(name, options), names)


@pytest.mark.parametrize("name, options, field", [
    ("imagefolder", {}, "root"),
    ("imagefolder", {"root": "x", "val_fraction": 1.0}, "val_fraction"),
    ("imagefolder", {"root": "x", "val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction + test_fraction"),
    ("imagefolder", {"root": "x", "limit_classes": -1}, "limit_classes"),
    ("imagenet", {}, "root"),
    ("imagenet", {"root": "x", "test_per_class": 0}, "test_per_class"),
    ("imagenet", {"root": "x", "test_per_class": 5, "limit_per_class": 5}, "limit_per_class"),
])
def test_bad_options_name_the_field(name: str, options: dict, field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        dataset_config(name, options)


def test_empty_root_is_not_the_current_folder() -> None:
    for module, config in [(imagefolder, imagefolder.ImageFolderConfig()), (imagenet, imagenet.ImageNetConfig())]:
        with pytest.raises(DatasetError, match="no root folder"):
            module.load(config)
