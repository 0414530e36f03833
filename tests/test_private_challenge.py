"""Challenges from labels only the server holds: an image folder with a CSV, VOC/COCO detection, ImageNet's val;
the kit leaks nothing, the source files can go, a perfect file scores 0 error, closing refuses submissions."""
from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image, PngImagePlugin
from test_db import denied, roles  # noqa: F401 - roles: the fixture of PostgreSQL's roles
from test_kit import assert_no_leak, assert_order_unrelated, held

from db.engine import create_schema, session_scope
from db.schema import Challenge
from leaderboard import private_labels
from leaderboard.challenges import close_challenge, create_private_challenge
from leaderboard.errors import ChallengeError
from leaderboard.quota import submit
from leaderboard.tokens import create_team

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")
CLASSES = ["cat", "dog", "fox", "owl", "yak"]


def image_folder(root: Path, n: int = 250) -> tuple[Path, Path]:
    """n images named by their class, with the label in EXIF, a JPEG comment or a PNG text chunk; a labels CSV
    listed class by class (the worst order a host could hand over)."""
    rng = np.random.default_rng(0)
    images = root / "images"
    images.mkdir(parents=True)
    rows = []
    for i in range(n):
        name = CLASSES[i * len(CLASSES) // n]
        pixels = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        if i % 2:
            exif = Image.Exif()
            exif[0x010E] = f"label {name}"  # ImageDescription
            image.save(images / f"{name}_{i}.jpg", exif=exif.tobytes(), comment=f"class {name}")
            rows.append(f"{name}_{i}.jpg,{name}")
        else:
            info = PngImagePlugin.PngInfo()
            info.add_text("Comment", f"class {name}")
            image.save(images / f"{name}_{i}.png", pnginfo=info)
            rows.append(f"{name}_{i}.png,{name}")
    labels = root / "labels.csv"
    labels.write_text("image,label\n" + "\n".join(rows) + "\n")
    return images, labels


def topk_error(file: bytes, truth: dict[str, int], k: int) -> float:
    """An independent top-k error: the file read with the csv-free split, every image counted."""
    lines = file.decode().strip().splitlines()[1:]
    guesses = {line.split(",")[0]: [int(v) for v in line.split(",")[1:]] for line in lines}
    return sum(truth[i] not in guesses[i][:k] for i in truth) / len(truth)


@pytest.fixture
def url(db_url: str) -> str:
    return db_url


def test_round_trip_from_a_folder_and_a_csv(url: str, tmp_path: Path) -> None:
    images, labels = image_folder(tmp_path / "src")
    source = private_labels.classification(images, labels)
    assert source.class_names == CLASSES
    create_private_challenge(url, "pets", source, train_data="the pets-2024 training folder, on request",
                             public_fraction=1.0)
    # The files only the server had are gone: everything below works from the database.
    shutil.rmtree(tmp_path / "src")
    kit = assert_no_leak(url, "pets", tmp_path / "kit", secrets_in_sources=(*(f"class {n}" for n in CLASSES), *(f"label {n}" for n in CLASSES)))
    assert_order_unrelated(url, "pets", kit)
    assert not any(name in p.name for p in (kit / "images").iterdir() for name in CLASSES)
    rules = json.loads((kit / "rules.json").read_text())
    assert rules["open_book"] is False and rules["training_data"].startswith("the pets-2024")
    truth = {k: int(v) for k, v in held(url, "pets").items()}  # type: ignore[call-overload]
    order = [line.split(",")[0] for line in (kit / "sample_submission.csv").read_text().splitlines()[1:]]
    rng = np.random.default_rng(1)
    rows = []
    for image_id in order:  # right first on about half, right within five otherwise
        others = [c for c in rng.permutation(len(CLASSES)).tolist() if c != truth[image_id]]
        guesses = [truth[image_id], *others] if rng.random() < 0.5 else [*others[:2], truth[image_id], *others[2:]]
        rows.append(f"{image_id}," + ",".join(map(str, guesses)))
    mixed = ("image_id,pred_1,pred_2,pred_3,pred_4,pred_5\n" + "\n".join(rows) + "\n").encode()
    perfect = ("image_id,pred_1\n" + "\n".join(f"{i},{truth[i]}" for i in order) + "\n").encode()
    with session_scope(url) as s:
        token = create_team(s, "outside")
    result = submit(url, token, "pets", perfect, "p.csv", label="oracle")
    assert result.scores["top1_err"] == 0.0 and result.scores["top5_err"] == 0.0
    result = submit(url, token, "pets", mixed, "m.csv", label="half")
    assert result.scores["top1_err"] == pytest.approx(topk_error(mixed, truth, 1))
    assert result.scores["top5_err"] == pytest.approx(topk_error(mixed, truth, 5)) == 0.0
    assert 0.3 < result.scores["top1_err"] < 0.7


def test_close_refuses_later_submissions(url: str, tmp_path: Path) -> None:
    images, labels = image_folder(tmp_path / "src", n=10)
    create_private_challenge(url, "pets", private_labels.classification(images, labels))
    with session_scope(url) as s:
        before = s.scalars(sa.select(Challenge)).one().kit_sha256
        token = create_team(s, "outside")
    closed = close_challenge(url, "pets")
    assert closed.closed_at is not None and closed.kit_sha256 != before  # the rules in the kit say it
    with pytest.raises(ChallengeError, match="closed since"):
        submit(url, token, "pets", b"image_id,pred_1\n", "p.csv")
    with pytest.raises(ChallengeError, match="closed already"):
        close_challenge(url, "pets")


def test_classes_file_ids_and_errors_name_the_line(tmp_path: Path) -> None:
    images, labels = image_folder(tmp_path / "src", n=10)
    classes = tmp_path / "classes.csv"
    classes.write_text("id,name,wnid\n0,yak,n1\n1,owl,n2\n2,fox,n3\n3,dog,n4\n4,cat,n5\n")
    source = private_labels.classification(images, labels, classes)
    assert source.class_names == ["yak", "owl", "fox", "dog", "cat"] and source.wnids[0] == "n1"
    assert source.items[0][1] == 4  # cat
    labels.write_text("image,label\ncat_0.png,cat\ncat_0.png,dog\n")
    with pytest.raises(ChallengeError, match=r"labels.csv:3: image 'cat_0.png' is labelled twice"):
        private_labels.classification(images, labels)
    labels.write_text("image,label\n../x.png,cat\n")
    with pytest.raises(ChallengeError, match="relative to"):
        private_labels.classification(images, labels)
    labels.write_text("image,label\ncat_0.png,zebra\n")
    with pytest.raises(ChallengeError, match="label 'zebra' is no class"):
        private_labels.classification(images, labels, classes)


def test_detection_from_voc_and_coco(url: str, tmp_path: Path) -> None:
    from test_detection import write_voc

    write_voc(tmp_path / "voc")
    base = tmp_path / "voc" / "VOC2007"
    source = private_labels.detection(base / "JPEGImages", base / "Annotations")
    assert source.class_names == ["cat", "dog", "person"]
    create_private_challenge(url, "vocp", source)
    assert_no_leak(url, "vocp", tmp_path / "kit1")
    boxes = sorted(tuple(box) for v in held(url, "vocp").values() for box in v)  # type: ignore[attr-defined]
    assert (10.0, 20.0, 40.0, 60.0, 2, 0) in boxes  # the dog of 000001, 0-based as the scorer reads
    coco_dir = tmp_path / "coco"
    coco_dir.mkdir()
    Image.new("RGB", (40, 30)).save(coco_dir / "a.jpg")
    Image.new("RGB", (40, 30)).save(coco_dir / "b.png")
    (tmp_path / "held.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.png"}],
        "categories": [{"id": 7, "name": "zebra"}, {"id": 3, "name": "ant"}],
        "annotations": [{"image_id": 1, "category_id": 7, "bbox": [1, 2, 3, 4], "iscrowd": 0}]}))
    create_private_challenge(url, "cocop", private_labels.detection(coco_dir, tmp_path / "held.json"))
    assert_no_leak(url, "cocop", tmp_path / "kit2")
    assert sorted(map(str, held(url, "cocop").values())) == ["[[1.0, 2.0, 4.0, 6.0, 2, 0]]", "[]"]


def test_imagenet_val_holdout_from_the_devkit(tmp_path: Path, sqlite_url: str) -> None:
    from test_datasets_files import WNIDS, imagenet_tree, write_devkit

    url = create_schema(sqlite_url)
    root = imagenet_tree(tmp_path / "inet")
    write_devkit(root)
    source = private_labels.imagenet_val({"root": str(root)}, per_class=2)
    assert source.wnids == WNIDS and len(source.items) == 6
    create_private_challenge(url, "ilsvrc", source, dataset="imagenet", dataset_options={"root": str(root)})
    kit = assert_no_leak(url, "ilsvrc", tmp_path / "kit", secrets_in_sources=("ILSVRC2012", *WNIDS))
    with open(kit / "classes.csv") as f:
        assert [row["wnid"] for row in csv.DictReader(f)] == WNIDS
    with pytest.raises(ChallengeError, match="fewer than the 9 asked for"):
        private_labels.imagenet_val({"root": str(root)}, per_class=9)


@pytest.mark.postgres
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_runner_reads_the_kit_but_not_the_labels(tmp_path: Path, roles) -> None:  # noqa: F811
    images, labels = image_folder(tmp_path / "src", n=10)
    create_private_challenge(roles.owner_url, "pets", private_labels.classification(images, labels))
    from leaderboard.kit import write_kit

    with session_scope(roles.runner_url) as s:
        write_kit(s, "pets", tmp_path / "kit")
    assert len(list((tmp_path / "kit" / "images").iterdir())) == 10
    for statement in ("SELECT * FROM held_labels", "SELECT label FROM held_labels"):
        assert denied(roles.runner_url, statement), statement
    assert not denied(roles.site_url, "SELECT count(*) FROM kit_images")


def test_a_bad_image_is_refused_by_name(tmp_path: Path) -> None:
    from leaderboard.kit_images import clean_image

    with pytest.raises(ChallengeError, match=r"^broken.jpg: not a readable image"):
        clean_image(b"\xff\xd8\xff\xe0\x00\x10JFIF", "broken.jpg")
    data = io.BytesIO()
    Image.new("RGB", (5, 4), "red").save(data, format="BMP")
    kit = clean_image(data.getvalue(), "x.bmp")
    assert kit.ext == "png" and Image.open(io.BytesIO(kit.data)).getpixel((0, 0)) == (255, 0, 0)


def test_a_private_challenge_tied_to_a_registry_dataset_is_found_by_its_runs(sqlite_url: str, tmp_path: Path) -> None:
    """`--images --labels --dataset digits`: the benchmark's digits runs find the challenge (and predict on its kit),
    with the dataset's class list, so a class id means the same digit to the runs and to the held labels."""
    from convbench.cli import main
    from leaderboard.challenges import find_challenge

    url = create_schema(sqlite_url)
    images = tmp_path / "scans"
    images.mkdir()
    rows = []
    for i, digit in enumerate([7, 3, 9, 0, 7, 1]):
        Image.fromarray(np.full((8, 8, 3), 16 * digit, np.uint8)).save(images / f"scan{i}.png")
        rows.append(f"scan{i}.png,{digit}")
    labels = tmp_path / "labels.csv"
    labels.write_text("image,label\n" + "\n".join(rows) + "\n")
    assert main(["challenge", "create", "--db", url, "--slug", "scans", "--images", str(images), "--labels",
                 str(labels), "--dataset", "digits"]) == 0
    with session_scope(url) as s:
        challenge = find_challenge(s, "digits", {})
        assert challenge is not None and challenge.slug == "scans" and not challenge.open_book
        assert challenge.class_names == [str(d) for d in range(10)]  # the dataset's, not the 5 labels seen, sorted
    assert sorted(held(url, "scans").values()) == [0, 1, 3, 7, 7, 9]  # "7" is class 7, not the 4th label sorted
