"""`python -m workers.check_data`: every bad file of a tree listed with its path and its problem (issue #12)."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from workers.check_data import EXIT_BAD_ROOT, EXIT_CLEAN, EXIT_PROBLEMS, detect_kind, main

ROOT = Path(__file__).resolve().parent.parent
WNIDS = ("n01440764", "n01443537")


def noise(size: int = 40, seed: int = 0) -> Image.Image:
    return Image.fromarray((np.random.default_rng(seed).random((size, size, 3)) * 255).astype(np.uint8))


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def clean_imagenet(root: Path, per_class: int = 5) -> Path:
    for c, wnid in enumerate(WNIDS):
        (root / "train" / wnid).mkdir(parents=True)
        (root / "val" / wnid).mkdir(parents=True)
        for i in range(per_class):
            noise(seed=10 * c + i).save(root / "train" / wnid / f"{wnid}_{i}.JPEG", "JPEG")
        noise(seed=100 + c).save(root / "val" / wnid / f"ILSVRC2012_val_{c + 1:08d}.JPEG", "JPEG")
    return root


def add_bad_files(root: Path) -> dict[str, tuple[Path, str]]:
    """One of each bad file ImageNet-like trees are known to hold: name -> (path, expected kind)."""
    folder = root / "train" / WNIDS[0]
    bad = {
        "truncated": (folder / "cut.JPEG", "truncated"),
        "png": (folder / "png_inside.JPEG", "wrong format"),
        "cmyk": (folder / "cmyk.JPEG", "CMYK"),
        "zero": (folder / "zero.JPEG", "empty"),
        "text": (root / "train" / WNIDS[1] / "page.jpg", "not an image"),
    }
    bad["truncated"][0].write_bytes(jpeg_bytes(noise(64, 7))[:900])
    noise(seed=8).save(bad["png"][0], "PNG")
    noise(seed=9).convert("CMYK").save(bad["cmyk"][0], "JPEG")
    bad["zero"][0].write_bytes(b"")
    bad["text"][0].write_text("<html>moved</html>\n")
    return bad


def run_check(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv, "--workers", "1"], out=out, err=err)
    return code, out.getvalue() + err.getvalue()


def problem_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("problem ")]


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    root = clean_imagenet(tmp_path / "imagenet")
    code, text = run_check(str(root))
    assert code == EXIT_CLEAN, text
    assert problem_lines(text) == [] and "12 images decoded" in text and "s per 1000 files" in text


def test_every_bad_file_is_listed_with_its_path_and_problem(tmp_path: Path) -> None:
    root = clean_imagenet(tmp_path / "imagenet")
    bad = add_bad_files(root)
    code, text = run_check(str(root), "--kind", "imagenet")
    assert code == EXIT_PROBLEMS, text
    lines = problem_lines(text)
    for path, kind in bad.values():
        assert any(kind in line and f"{path}:" in line for line in lines), (path, kind, text)
    assert len(lines) == len(bad), text  # and the good files are not listed
    truncated = next(line for line in lines if "cut.JPEG" in line)
    assert "truncated JPEG" in truncated
    assert "PNG data in a .JPEG file" in next(line for line in lines if "png_inside" in line)


def test_grayscale_is_noted_not_a_problem(tmp_path: Path) -> None:
    root = clean_imagenet(tmp_path / "imagenet")
    gray = root / "train" / WNIDS[1] / "gray.JPEG"
    noise(seed=3).convert("L").save(gray, "JPEG")
    code, text = run_check(str(root))
    assert code == EXIT_CLEAN, text
    assert any(line.startswith("note") and "grayscale" in line and str(gray) in line for line in text.splitlines())


def test_the_layout_is_told_from_the_tree(tmp_path: Path) -> None:
    imagenet = clean_imagenet(tmp_path / "imagenet")
    folder = tmp_path / "folder" / "train" / "cats"
    folder.mkdir(parents=True)
    noise().save(folder / "a.jpg")
    assert detect_kind(imagenet) == "imagenet" and detect_kind(tmp_path / "folder") == "imagefolder"
    assert detect_kind(voc_tree(tmp_path / "VOCdevkit")) == "voc"
    assert detect_kind(coco_tree(tmp_path / "coco")) == "coco"


def test_a_bad_root_exits_2_with_a_message(tmp_path: Path) -> None:
    code, text = run_check(str(tmp_path / "missing"))
    assert code == EXIT_BAD_ROOT and f"{tmp_path / 'missing'}: no such folder" in text
    (tmp_path / "stuff").mkdir()
    code, text = run_check(str(tmp_path / "stuff"))
    assert code == EXIT_BAD_ROOT and "pass --kind" in text


def voc_tree(root: Path) -> Path:
    base = root / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / sub).mkdir(parents=True)
    for i, image_id in enumerate(("000001", "000002", "000003")):
        noise(48, i).resize((60, 40)).save(base / "JPEGImages" / f"{image_id}.jpg")
        (base / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>60</width><height>40</height>"
            f"<depth>3</depth></size><object><name>dog</name><difficult>0</difficult><bndbox><xmin>2</xmin>"
            f"<ymin>3</ymin><xmax>30</xmax><ymax>20</ymax></bndbox></object></annotation>")
    (base / "ImageSets" / "Main" / "train.txt").write_text("000001\n000002\n")
    (base / "ImageSets" / "Main" / "test.txt").write_text("000003\n")
    return root


def test_voc_annotation_problems_are_listed(tmp_path: Path) -> None:
    root = voc_tree(tmp_path / "VOCdevkit")
    assert run_check(str(root))[0] == EXIT_CLEAN
    base = root / "VOC2007"
    (base / "ImageSets" / "Main" / "train.txt").write_text("000001\n000002\n000009\n")  # no such image
    (base / "Annotations" / "000002.xml").write_text(
        (base / "Annotations" / "000002.xml").read_text().replace("000002.jpg", "000007.jpg"))
    (base / "Annotations" / "000003.xml").write_text(
        (base / "Annotations" / "000003.xml").read_text().replace("<width>60", "<width>80"))
    (base / "Annotations" / "000004.xml").write_text("<annotation><filename>")
    code, text = run_check(str(root), "--kind", "voc")
    assert code == EXIT_PROBLEMS, text
    lines = problem_lines(text)
    expected = [("missing image", "train.txt:3"), ("missing annotation", "train.txt:3"),
                ("mislabelled annotation", "000002.xml"), ("size mismatch", "000003.jpg"),
                ("bad annotation", "000004.xml")]
    for kind, where in expected:
        assert any(kind in line and where in line for line in lines), (kind, where, text)


def coco_tree(root: Path) -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    images = []
    for i in range(3):
        noise(32, i).resize((50, 30)).save(root / "val2017" / f"{i:012d}.jpg")
        images.append({"id": i, "file_name": f"{i:012d}.jpg", "width": 50, "height": 30})
    data = {"images": images, "categories": [{"id": 18, "name": "dog"}],
            "annotations": [{"id": 1, "image_id": 0, "category_id": 18, "bbox": [1, 1, 10, 10], "iscrowd": 0}]}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return root


def test_coco_reference_problems_are_listed(tmp_path: Path) -> None:
    root = coco_tree(tmp_path / "coco")
    assert run_check(str(root))[0] == EXIT_CLEAN
    path = root / "annotations" / "instances_val2017.json"
    data = json.loads(path.read_text())
    data["images"].append({"id": 7, "file_name": "gone.jpg", "width": 5, "height": 5})
    data["images"][1]["width"] = 99
    data["annotations"] += [{"id": 2, "image_id": 42, "category_id": 18, "bbox": [0, 0, 1, 1]},
                            {"id": 3, "image_id": 0, "category_id": 5, "bbox": [0, 0, 1, 1]}]
    path.write_text(json.dumps(data))
    (root / "val2017" / f"{2:012d}.jpg").write_bytes(b"")
    code, text = run_check(str(root))
    assert code == EXIT_PROBLEMS, text
    lines = problem_lines(text)
    for kind, words in [("missing image", "gone.jpg"), ("size mismatch", "says 99x30"),
                        ("bad annotation", "image_id 42"), ("bad annotation", "category_id 5"),
                        ("empty", f"{2:012d}.jpg")]:
        assert any(kind in line and words in line for line in lines), (kind, words, text)


def test_the_command_line_with_a_process_pool(tmp_path: Path) -> None:
    # The real entry point, with worker processes and no TTY: plain progress lines, the same findings.
    root = clean_imagenet(tmp_path / "imagenet", per_class=40)
    bad = add_bad_files(root)
    proc = subprocess.run([sys.executable, "-m", "workers.check_data", str(root), "--workers", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == EXIT_PROBLEMS, proc.stdout + proc.stderr
    assert "checked 87/87 files" in proc.stderr
    assert len(problem_lines(proc.stdout)) == len(bad), proc.stdout


def test_the_check_imports_no_torch(tmp_path: Path) -> None:
    # torch costs seconds and most of a gigabyte per process: a data check on a login node needs none of it.
    root = clean_imagenet(tmp_path / "imagenet")
    code = (f"import sys; from workers.check_data import main; main([{str(root)!r}, '--workers', '1']); "
            f"print('torch loaded:', 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert "torch loaded: False" in proc.stdout, proc.stdout + proc.stderr


def test_a_layout_error_of_the_loader_is_a_problem(tmp_path: Path) -> None:
    root = tmp_path / "folder"
    (root / "train" / "cats").mkdir(parents=True)
    (root / "train" / "dogs").mkdir(parents=True)
    noise().save(root / "train" / "cats" / "a.jpg")
    code, text = run_check(str(root), "--kind", "imagefolder")
    assert code == EXIT_PROBLEMS and "layout" in text and str(root / "train" / "dogs") in text, text
