"""Every image decode error names the file and the problem, up to runs.error (issue #12)."""
from __future__ import annotations

import io
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import runs_in
from PIL import Image
from torch.utils.data import DataLoader

from workers.datasets import ImageDecodeError, load_dataset
from workers.datasets.images import FileImages

ROOT = Path(__file__).resolve().parent.parent


def jpeg_bytes(size: int = 48, seed: int = 0) -> bytes:
    pixels = (np.random.default_rng(seed).random((size, size, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def png_bytes(size: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(1).random((size, size, 3)) * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


BROKEN = {  # file name -> (bytes, words the error must hold besides the path)
    "truncated.JPEG": (jpeg_bytes()[:700], "truncated JPEG"),
    "no-end-marker.jpg": (jpeg_bytes()[:-2], "truncated JPEG"),
    "empty.jpg": (b"", "empty file"),
    "text.jpg": (b"<html>404 not found</html>\n", "not an image"),
    "truncated.png": (png_bytes()[:400], "PNG"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_image_raises_an_error_naming_the_file_and_the_problem(tmp_path: Path, name: str) -> None:
    data, words = BROKEN[name]
    path = tmp_path / "train" / "n01440764" / name
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    with pytest.raises(ImageDecodeError) as caught:
        FileImages([path], [0])[0]
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and words in message, message
    assert ".cpp:" not in message  # torchvision's source location is noise to a reader
    assert caught.value.path == str(path)


def test_a_good_image_still_decodes(tmp_path: Path) -> None:
    path = tmp_path / "ok.jpg"
    path.write_bytes(jpeg_bytes(40))
    image, label = FileImages([path], [3])[0]
    assert tuple(image.shape) == (3, 40, 40) and label == 3


def test_the_error_survives_pickling_and_dataloader_workers(tmp_path: Path) -> None:
    # Ray pickles a task's exception; a DataLoader worker rebuilds it from one message argument.
    path = tmp_path / "cut.jpg"
    path.write_bytes(jpeg_bytes()[:700])
    with pytest.raises(ImageDecodeError) as caught:
        FileImages([path], [0])[0]
    again = pickle.loads(pickle.dumps(caught.value))
    assert type(again) is ImageDecodeError and str(again) == str(caught.value) and again.path == str(path)
    with pytest.raises(ImageDecodeError, match="truncated JPEG") as in_worker:
        next(iter(DataLoader(FileImages([path], [0]), num_workers=1)))
    assert str(path) in str(in_worker.value)


def imagefolder_tree(root: Path, per_class: int = 6) -> Path:
    for c, colour in enumerate(("red", "green")):
        folder = root / "train" / colour
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (32, 32), colour).save(folder / f"{i:02d}.jpg")
    return root


def test_loading_an_imagefolder_with_a_truncated_file_names_it(tmp_path: Path) -> None:
    root = imagefolder_tree(tmp_path / "data")
    bad = root / "train" / "red" / "03.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    splits = load_dataset("imagefolder", {"root": str(root), "image_size": 32})
    everything = [(split, i) for split in (splits.train, splits.val, splits.test) for i in range(len(split))]
    errors = []
    for split, i in everything:
        try:
            split[i]
        except ImageDecodeError as exc:
            errors.append(str(exc))
    assert len(errors) == 1 and errors[0].startswith(f"{bad}: truncated JPEG"), errors


SUITE = """
name = "corrupt"
architectures = ["resnet18"]
datasets = [{{ name = "imagefolder", root = "{root}", image_size = 32, val_fraction = 0.2, test_fraction = 0.2 }}]
max_failures = 1
[recipe]
epochs = 1
batch_size = 4
crop_scale = [0.6, 1.0]
"""


@pytest.mark.slow
def test_a_job_on_a_tree_with_a_corrupt_file_records_the_path_in_runs_error(ray_head, tmp_path: Path) -> None:
    root = imagefolder_tree(tmp_path / "data", per_class=8)
    bad = root / "train" / "green" / "05.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    suite = tmp_path / "corrupt.toml"
    suite.write_text(SUITE.format(root=root))
    url, storage = f"sqlite:///{tmp_path}/c.db", tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", "--suite", str(suite), "--db", url, "--storage", str(storage),
         "--address", ray_head.address], cwd=ROOT, env=ray_head.env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (run,) = runs_in(url)
    assert run.state == "failed"
    assert "ImageDecodeError" in run.error and f"{bad}: truncated JPEG" in run.error, run.error
