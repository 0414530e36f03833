"""The participant kit on every shipped dataset kind: no label in names, order, metadata or text; the manifest
verifies; the Data page offers it. The leak checks (`assert_no_leak`) are shared with test_private_challenge."""
from __future__ import annotations

import csv
import io
import itertools
import json
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from db.engine import create_schema, session_scope
from db.schema import Challenge, HeldLabel, KitImage
from leaderboard.challenges import create_challenge
from leaderboard.kit import kit_zip_bytes, write_kit
from leaderboard.kit_images import PNG_KEEP, PNG_SIGNATURE

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")


def held(url: str, slug: str) -> dict[str, object]:
    """The held labels, read as the owner (tests only)."""
    with session_scope(url) as s:
        challenge = s.scalars(sa.select(Challenge).where(Challenge.slug == slug)).one()
        rows = s.execute(sa.select(HeldLabel.image_id, HeldLabel.label, HeldLabel.boxes)
                         .where(HeldLabel.challenge_id == challenge.id)).all()
    return {image_id: (label if label is not None else boxes) for image_id, label, boxes in rows}


def jpeg_markers(data: bytes) -> list[int]:
    """The markers before the first scan."""
    markers, i = [], 2
    while i < len(data):
        marker = data[i + 1]
        markers.append(marker)
        if marker == 0xDA:
            return markers
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return markers


def png_chunks(data: bytes) -> list[bytes]:
    chunks, i = [], 8
    while i < len(data):
        length, kind = struct.unpack(">I4s", data[i:i + 8])
        chunks.append(kind)
        i += 12 + length
    return chunks


def longest_run(values: list) -> int:
    best = run = 1
    for a, b in itertools.pairwise(values):
        run = run + 1 if a == b else 1
        best = max(best, run)
    return best


def spearman(x: list[float], y: list[float]) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def assert_no_leak(url: str, slug: str, out: Path, secrets_in_sources: tuple[str, ...] = (),
                   id_pattern: str = r"[0-9a-f]{16}") -> Path:
    """Writes the kit of `slug` to `out` and checks it gives no label away; returns the kit folder."""
    kit = out
    with session_scope(url) as s:
        write_kit(s, slug, kit)
    labels = held(url, slug)
    # The manifest verifies, with the tool a participant has.
    done = subprocess.run(["sha256sum", "-c", "--strict", "MANIFEST.sha256"], cwd=kit, check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = {line.split("  ", 1)[1] for line in (kit / "MANIFEST.sha256").read_text().splitlines()}
    on_disk = {p.relative_to(kit).as_posix() for p in kit.rglob("*") if p.is_file()} - {"MANIFEST.sha256"}
    assert listed == on_disk
    # Names: the ids and nothing else, every id held, no class name in any name.
    with open(kit / "sample_submission.csv") as f:
        rows = list(csv.reader(f))
    order = [row[0] for row in rows[1:]]
    files = {p.stem: p for p in (kit / "images").iterdir()}
    assert set(files) == set(order) == set(labels)
    assert all(re.fullmatch(id_pattern + r"\.(png|jpg)", p.name) for p in files.values())
    with open(kit / "classes.csv") as f:
        classes = list(csv.DictReader(f))
    names = {c["name"].lower() for c in classes} | {c["wnid"].lower() for c in classes if c["wnid"]}
    for image_id in order:
        assert not any(len(n) > 2 and n in image_id.lower() for n in names)
    # Metadata: only pixel-making chunks and segments, no text from the source files.
    for path in files.values():
        data = path.read_bytes()
        if path.suffix == ".png":
            assert data.startswith(PNG_SIGNATURE) and set(png_chunks(data)) <= PNG_KEEP
        else:
            markers = jpeg_markers(data)
            assert not [m for m in markers if (0xE0 <= m <= 0xEF and m != 0xEE) or m == 0xFE], markers
        for text in secrets_in_sources:
            assert text.encode() not in data, (path, text)
    # Nothing in the text files equals the labels: the sample file guesses no better than chance.
    if classes and isinstance(next(iter(labels.values())), int):
        in_order = [labels[i] for i in order]
        hits = sum(int(row[1]) == labels[row[0]] for row in rows[1:])
        assert hits < len(order) * 0.6 or len(order) < 10
        spelled = ",".join(map(str, in_order))
        for name in ("rules.json", "README.txt", "classes.csv", "sample_submission.csv"):
            assert len(in_order) < 5 or spelled not in (kit / name).read_text()
    return kit


def assert_order_unrelated(url: str, slug: str, kit: Path) -> None:
    """Kit order against labels on a few hundred images: no long run of one class, rank correlation near 0.
    A sorted or grouped order fails both; a random one fails with probability below 1e-5."""
    labels = held(url, slug)
    with open(kit / "sample_submission.csv") as f:
        order = [row[0] for row in list(csv.reader(f))[1:]]
    in_order = [labels[i] for i in order]
    assert len(in_order) >= 200
    assert longest_run(in_order) <= 8
    assert abs(spearman(list(range(len(in_order))), in_order)) < 0.3
    # ... and the ids' own sort order says nothing either.
    assert abs(spearman([float(np.argsort(np.argsort(order))[i]) for i in range(len(order))], in_order)) < 0.3


SYNTHETIC = {"num_classes": 10, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 25}


@pytest.fixture
def url(sqlite_url: str) -> str:
    return create_schema(sqlite_url)


def test_synthetic_kit_is_open_book_lossless_and_unordered(url: str, tmp_path: Path) -> None:
    import torch

    from workers.datasets import load_dataset

    create_challenge(url, "syn", "synthetic", SYNTHETIC)
    kit = assert_no_leak(url, "syn", tmp_path / "kit", id_pattern=r"test_\d{6}")
    assert_order_unrelated(url, "syn", kit)
    rules = json.loads((kit / "rules.json").read_text())
    assert rules["open_book"] is True and "Open-book" in rules["open_book_means"]
    assert "synthetic" in rules["training_data"] and rules["quota"] == {"submissions": 2, "per_rolling_days": 7.0}
    # The PNGs are the split's tensors, bit for bit: a model predicting on the kit sees what the worker sees.
    from PIL import Image

    test = load_dataset("synthetic", SYNTHETIC).test
    for image, image_id in test:
        kit_pixels = np.array(Image.open(kit / "images" / f"{image_id}.png").convert("RGB"))
        assert torch.equal(torch.as_tensor(kit_pixels).permute(2, 0, 1), image)
    with session_scope(url) as s:
        challenge = s.scalars(sa.select(Challenge)).one()
        assert challenge.open_book and challenge.kit_sha256 == __import__("hashlib").sha256(
            (kit / "MANIFEST.sha256").read_bytes()).hexdigest()


def test_digits_kit(url: str, tmp_path: Path) -> None:
    create_challenge(url, "dig", "digits", {"image_size": 8})
    kit = assert_no_leak(url, "dig", tmp_path / "kit", id_pattern=r"test_\d{6}")
    assert_order_unrelated(url, "dig", kit)
    with open(kit / "classes.csv") as f:
        assert next(csv.reader(f)) == ["id", "name", "wnid"]


def test_imagefolder_and_imagenet_layout_kits_carry_no_path(url: str, tmp_path: Path) -> None:
    from test_datasets_files import CLASSES, imagenet_tree, write_devkit, write_image

    root = tmp_path / "folder"
    for name in CLASSES:
        for k in range(8):
            write_image(root / "train" / name / f"{name}_{k}.png", name)
    create_challenge(url, "folder", "imagefolder", {"root": str(root), "val_fraction": 0.25, "test_fraction": 0.25})
    assert_no_leak(url, "folder", tmp_path / "kit1", secrets_in_sources=tuple(f"{c}_" for c in CLASSES), id_pattern=r"test_\d{6}")
    inet = imagenet_tree(tmp_path / "inet")
    write_devkit(inet)
    create_challenge(url, "inet", "imagenet", {"root": str(inet), "test_per_class": 2})
    assert_no_leak(url, "inet", tmp_path / "kit2", secrets_in_sources=("n0144", "n0148"), id_pattern=r"test_\d{6}")
    with session_scope(url) as s:
        # Carved out of train/<wnid>/, which runners and teams read: open-book, and the board says so.
        assert [c.open_book for c in s.scalars(sa.select(Challenge).order_by(Challenge.id))] == [True, True]


def test_detection_kits_voc_and_coco(url: str, tmp_path: Path) -> None:
    from test_detection import write_voc

    write_voc(tmp_path / "voc")
    create_challenge(url, "voc", "voc", {"root": str(tmp_path / "voc"), "classes": ["dog", "person"]})
    kit = assert_no_leak(url, "voc", tmp_path / "kit", id_pattern=r"test_\d{6}")
    with open(kit / "sample_submission.csv") as f:
        assert next(csv.reader(f)) == ["image_id", "class_id", "score", "x1", "y1", "x2", "y2"]
    with session_scope(url) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(KitImage)) == 2


def test_zip_holds_the_kit_and_is_the_same_every_time(url: str, tmp_path: Path) -> None:
    create_challenge(url, "syn", "synthetic", {**SYNTHETIC, "test_per_class": 2})
    with session_scope(url) as s:
        data = kit_zip_bytes(s, "syn")
        assert kit_zip_bytes(s, "syn") == data
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = archive.namelist()
    assert "syn/MANIFEST.sha256" in names and len([n for n in names if n.startswith("syn/images/")]) == 20
    assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    archive.extractall(tmp_path / "x")
    done = subprocess.run(["sha256sum", "-c", "MANIFEST.sha256"], cwd=tmp_path / "x" / "syn", check=False, capture_output=True)
    assert done.returncode == 0


def test_kit_cli_writes_and_refuses_a_full_folder(url: str, tmp_path: Path) -> None:
    from conftest import project_env

    create_challenge(url, "syn", "synthetic", {**SYNTHETIC, "test_per_class": 2})
    out = tmp_path / "kit"
    cmd = [sys.executable, "-m", "convbench", "challenge", "kit", "syn", str(out),
           "--db", url]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=project_env())
    assert done.returncode == 0, done.stderr
    assert "20 images" in done.stdout and (out / "MANIFEST.sha256").is_file()
    again = subprocess.run(cmd, check=False, capture_output=True, text=True, env=project_env())
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "not an empty folder" in again.stderr


def test_data_page_offers_the_kit(url: str, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    create_challenge(url, "syn", "synthetic", {**SYNTHETIC, "test_per_class": 2}, title="Shapes")
    monkeypatch.setenv("CONVBENCH_DB", url)
    app = AppTest.from_file(str(Path(__file__).parents[1] / "leaderboard" / "views" / "data.py"), default_timeout=60).run()
    assert not app.exception, app.exception
    text = " ".join([*(m.value for m in app.markdown), *(c.value for c in app.caption),
                     *(h.value for h in app.subheader)])
    assert len(app.get("download_button")) == 1
    assert "Shapes" in text and "20 images" in text and "open-book" in text.lower()
    assert "image_id,pred_1" in " ".join(c.value for c in app.code)
