"""Issue #14: the orchestrator's baselines predict on exactly the participants' kit images.

- The worker: a kit folder (built here from the dataset, in leaderboard.kit's layout) decodes to exactly the tensors
  of the dataset's test split, and a trained run's predictions on the kit are its predictions on the test split,
  image for image, keyed by the kit's opaque ids.
- A kit that is altered, half written, on other classes or named outside the storage root is refused by name.
- The driver: a challenge, a tiny suite through the orchestrator, the baseline submission, and its score equal to
  an independent top-k computation of the worker's kit predictions against the held labels.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import torch
from helpers import runs_in

from db.engine import create_schema, session_scope
from db.schema import Challenge, HeldLabel, Submission, Team
from workers.context import RunContext
from workers.datasets import load_dataset
from workers.datasets.kit import KitError, kit_folder, kit_test_split, prediction_split, read_kit
from workers.jobs import JobSpec
from workers.train import train_classifier

ROOT = Path(__file__).resolve().parent.parent
SYNTHETIC = {"num_classes": 6, "image_size": 16, "train_per_class": 16, "val_per_class": 2, "test_per_class": 10}
DIGITS = {"image_size": 16, "val_fraction": 0.02, "test_fraction": 0.05}  # 89 test scans; the rest trains


def build_kit(dataset: str, options: dict, folder: Path, seed: int = 7) -> dict[str, str]:
    """A kit of the dataset's test split in leaderboard.kit's layout (shuffled, opaque ids, 8-bit PNG, sample
    submission, classes, rules, manifest); returns kit id -> the test split's id."""
    from torchvision.io import write_png

    data = load_dataset(dataset, options)
    (folder / "images").mkdir(parents=True)
    mapping, rng = {}, np.random.default_rng(seed)
    for position, i in enumerate(rng.permutation(len(data.test))):
        image, test_id = data.test[int(i)]
        kit_id = hashlib.sha256(f"{seed}/{position}".encode()).hexdigest()[:16]
        write_png(image, str(folder / "images" / f"{kit_id}.png"))
        mapping[kit_id] = test_id
    with open(folder / "sample_submission.csv", "w", newline="") as f:
        csv.writer(f).writerows([["image_id", *(f"pred_{k}" for k in range(1, 6))],
                                 *([kit_id, 0, 1, 2, 3, 4] for kit_id in mapping)])
    with open(folder / "classes.csv", "w", newline="") as f:
        csv.writer(f).writerows([["id", "name", "wnid"], *([k, name, ""] for k, name in enumerate(data.class_names))])
    (folder / "rules.json").write_text(json.dumps({"metric": "top5_err"}))
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    (folder / "MANIFEST.sha256").write_text("".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(folder).as_posix()}\n" for p in files))
    return mapping


def predictions(path: Path) -> dict[str, list[int]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "image_id"
    return {row[0]: [int(g) for g in row[1:]] for row in rows[1:]}


@pytest.mark.parametrize("dataset, options", [("synthetic", SYNTHETIC), ("digits", DIGITS)])
def test_a_run_predicts_on_the_kit_as_on_the_test_split(tmp_path, dataset, options) -> None:
    torch.set_num_threads(2)
    mapping = build_kit(dataset, options, tmp_path / "_kits" / "ch")
    spec = JobSpec(suite="kit", task="classification", arch="resnet18", dataset=dataset, dataset_options=options,
                   recipe={"epochs": 1, "batch_size": 16, "max_steps_per_epoch": 3, "lr": 0.1, "eval_crop": 1.0},
                   seed=0, input_size=32, storage=str(tmp_path), kit="_kits/ch")
    assert spec.job_id == replace(spec, kit=None).job_id  # the kit names the images predicted, not the result

    # The kit's images are the test split's tensors, bit for bit (8-bit PNG of 8-bit images is lossless).
    data = load_dataset(dataset, options)
    split = prediction_split(spec, data)
    test_index = {data.test[i][1]: i for i in range(len(data.test))}
    assert len(split) == len(data.test) == len(mapping)
    for i in range(len(split)):
        image, kit_id = split[i]
        assert torch.equal(image, data.test[test_index[mapping[kit_id]]][0]), kit_id

    # One trained model: its predictions on the kit, then (resumed from its last checkpoint) on the test split.
    train_classifier(spec, RunContext(job_id=spec.job_id, storage=spec.folder))
    on_kit = predictions(spec.folder / "predictions.csv")
    assert list(on_kit) == list(mapping)  # keyed by the kit's ids, in kit order
    assert f"test predictions on the kit _kits/ch: {len(mapping)} images" in (spec.folder / "log.txt").read_text()
    train_classifier(replace(spec, kit=None), RunContext(job_id=spec.job_id, storage=spec.folder))
    on_test = predictions(spec.folder / "predictions.csv")
    assert set(on_test) == set(test_index)
    assert {kit_id: on_test[test_id] for kit_id, test_id in mapping.items()} == on_kit
    assert len({tuple(g) for g in on_kit.values()}) > 1  # a model that says one thing would prove nothing


def test_a_file_datasets_kit_decodes_to_its_test_split_through_the_same_eval_transform(tmp_path) -> None:
    """imagefolder: the kit the challenge server writes (JPEG and PNG stripped of EXIF and text chunks) is, once
    decoded and put through the run's eval transform (resize, crop, normalise), the test split's tensor exactly."""
    from PIL import Image, PngImagePlugin

    from leaderboard.challenges import create_challenge
    from leaderboard.kit import write_kit
    from workers.recipes import Recipe
    from workers.train import eval_transform

    rng = np.random.default_rng(0)
    for name in ("cat", "dog", "fox"):
        for k in range(6):
            path = tmp_path / "tree" / "train" / name / f"{name}_{k}.{'png' if k % 2 else 'jpg'}"
            path.parent.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(rng.integers(0, 256, (30 + k, 40, 3), dtype=np.uint8))
            if k % 2:
                text = PngImagePlugin.PngInfo()
                text.add_text("Comment", f"a {name}")
                image.save(path, pnginfo=text)
            else:
                exif = Image.Exif()
                exif[0x010E] = f"a {name}"  # ImageDescription
                image.save(path, quality=90, exif=exif)
    options = {"root": str(tmp_path / "tree"), "val_fraction": 0.2, "test_fraction": 0.4, "image_size": 40}
    url = create_schema(f"sqlite:///{tmp_path / 'c.db'}")
    create_challenge(url, "files", "imagefolder", options)
    with session_scope(url) as s:
        folder = write_kit(s, "files", tmp_path / "runs" / "_kits" / "files")
    assert not any(name in p.read_bytes().decode("latin-1") for p in (folder / "images").iterdir()
                   for name in ("a cat", "a dog", "a fox"))  # the metadata is gone

    data = load_dataset("imagefolder", options)
    spec = JobSpec(suite="f", task="classification", arch="resnet18", dataset="imagefolder", dataset_options=options,
                   recipe={}, seed=0, input_size=32, storage=str(tmp_path / "runs"), kit="_kits/files")
    split = prediction_split(spec, data)
    transform = eval_transform(32, Recipe())
    test = {data.test[i][1]: data.test[i][0] for i in range(len(data.test))}
    assert len(split) == len(test) >= 6
    for i in range(len(split)):
        image, image_id = split[i]
        assert torch.equal(image, test[image_id]) and torch.equal(transform(image), transform(test[image_id]))


def test_a_kit_altered_incomplete_on_other_classes_or_outside_the_root_is_refused(tmp_path) -> None:
    folder = tmp_path / "_kits" / "ch"
    mapping = build_kit("synthetic", SYNTHETIC | {"test_per_class": 2}, folder)
    names = load_dataset("synthetic", SYNTHETIC).class_names
    assert read_kit(folder).image_ids == list(mapping)

    first = next(iter(mapping))
    image = folder / "images" / f"{first}.png"
    original = image.read_bytes()
    image.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(KitError, match=f"{first}.png: its SHA-256 differs from the kit's manifest"):
        read_kit(folder)
    image.unlink()
    with pytest.raises(KitError, match=f"no image for id '{first}'"):
        read_kit(folder)
    image.write_bytes(original)

    with pytest.raises(KitError, match="lists 6 classes, the dataset has 5"):
        kit_test_split(folder, names[:5])
    with pytest.raises(KitError, match="class 1 is 1/'square', the dataset's is 'triangle'"):
        kit_test_split(folder, [names[0], names[2], names[1], *names[3:]])
    assert len(kit_test_split(folder, names)[0]) == len(mapping)

    for named in ("../elsewhere", "/etc", ""):
        with pytest.raises(KitError, match="relative to the storage root"):
            kit_folder(tmp_path, named)
    (tmp_path / "_kits" / "link").symlink_to(tmp_path.parent, target_is_directory=True)
    with pytest.raises(KitError, match="resolves outside the storage root"):
        kit_folder(tmp_path, "_kits/link")


def test_baselines_go_through_the_gate_when_one_is_configured(tmp_path, monkeypatch, caplog) -> None:
    """$CONVBENCH_GATE_URL: the file goes over HTTP with the official team's token from the environment; without
    the token nothing is submitted (never in process behind the gate's back); without a gate, in process."""
    from gate_server import serving

    from leaderboard.challenges import create_challenge
    from leaderboard.tokens import create_team
    from orchestrator.baselines import BASELINE_TEAM, submit_baseline
    from orchestrator.store import Store

    url = create_schema(f"sqlite:///{tmp_path / 'c.db'}")
    options = {"num_classes": 6, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 10}
    create_challenge(url, "syn", "synthetic", options)
    with session_scope(url) as s:
        token = create_team(s, BASELINE_TEAM, official=True)
        held = {i: label for i, label in s.execute(sa.select(HeldLabel.image_id, HeldLabel.label))}
        public = set(s.scalars(sa.select(HeldLabel.image_id).where(HeldLabel.part.is_distinct_from("private"))))
    root = tmp_path / "runs"
    job = JobSpec(suite="gate", task="classification", arch="resnet18", dataset="synthetic", dataset_options=options,
                  recipe={"epochs": 1}, seed=0, input_size=32, storage=str(root))
    Store(url, tmp_path / "spool", retries=()).record(job, {"top1_err": 0.5})
    job.folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    guesses = {image_id: [int(g) for g in rng.permutation(6)[:3]] for image_id in held}  # top-5 error ~ 1/2
    (job.folder / "predictions.csv").write_text("image_id,pred_1,pred_2,pred_3\n" + "".join(
        f"{i},{','.join(map(str, g))}\n" for i, g in guesses.items()))

    def submitted() -> list:
        with session_scope(url) as s:
            return s.execute(sa.select(Submission.label, Submission.primary_score, Team.name, Submission.run_id)
                             .join(Team)).all()

    with serving(url) as gate:
        monkeypatch.setenv("CONVBENCH_GATE_URL", gate)
        monkeypatch.delenv("CONVBENCH_BASELINE_TOKEN", raising=False)
        with caplog.at_level(logging.ERROR, "convbench.baselines"):
            assert submit_baseline(url, job, root) is None
        assert "CONVBENCH_BASELINE_TOKEN" in caplog.text and submitted() == []

        monkeypatch.setenv("CONVBENCH_BASELINE_TOKEN", "not-the-token")
        caplog.clear()
        with caplog.at_level(logging.ERROR, "convbench.baselines"):
            assert submit_baseline(url, job, root) is None
        assert f"rejected through the gate {gate}" in caplog.text and "not-the-token" not in caplog.text
        assert submitted() == []

        monkeypatch.setenv("CONVBENCH_BASELINE_TOKEN", token)
        answer = submit_baseline(url, job, root)
    assert isinstance(answer, dict)
    # The board's score is the public part's (leaderboard.parts); the private part's is held until the close.
    independent = float(np.mean([held[i] not in guesses[i] for i in public]))
    assert 0 < independent < 1
    # The entry names its run (the board links to it), as an in-process baseline's does.
    assert submitted() == [("resnet18", pytest.approx(independent), BASELINE_TEAM, job.job_id)]

    monkeypatch.delenv("CONVBENCH_GATE_URL")
    (job.folder / "predictions.csv").write_text("image_id,pred_1\n" + "".join(f"{i},{held[i]}\n" for i in held))
    result = submit_baseline(url, job, root)  # no gate: in process, as a local campaign does; one entry per run
    assert result is not None and not isinstance(result, dict) and result.existing
    assert result.primary_score == pytest.approx(independent) and len(submitted()) == 1
    other = replace(job, seed=1)
    Store(url, tmp_path / "spool", retries=()).record(other, {"top1_err": 0.5})
    other.folder.mkdir(parents=True)
    (other.folder / "predictions.csv").write_text((job.folder / "predictions.csv").read_text())
    result = submit_baseline(url, other, root)
    assert result is not None and not isinstance(result, dict) and result.primary_score == pytest.approx(0.0)
    assert len(submitted()) == 2


def test_only_an_official_team_names_a_run_over_the_gate(tmp_path) -> None:
    from gate_server import serving

    from leaderboard import gate_client
    from leaderboard.challenges import create_challenge
    from leaderboard.errors import ValidationError
    from leaderboard.tokens import create_team
    from orchestrator.store import Store

    url = create_schema(f"sqlite:///{tmp_path / 'c.db'}")
    options = {"num_classes": 6, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 4}
    create_challenge(url, "syn", "synthetic", options)
    job = JobSpec(suite="gate", task="classification", arch="resnet18", dataset="synthetic", dataset_options=options,
                  recipe={"epochs": 1}, seed=0, input_size=32, storage=str(tmp_path / "runs"))
    Store(url, tmp_path / "spool", retries=()).record(job, {"top1_err": 0.5})
    with session_scope(url) as s:
        token = create_team(s, "outside team")
        ids = list(s.scalars(sa.select(HeldLabel.image_id)))
    data = ("image_id,pred_1\n" + "".join(f"{i},0\n" for i in ids)).encode()
    with serving(url) as gate, pytest.raises(ValidationError, match="only an official baseline team"):
        gate_client.submit(gate, token, "syn", data, "p.csv", run_id=job.job_id)  # would pose as the benchmark's run
    with session_scope(url) as s:
        assert s.scalar(sa.select(sa.func.count(Submission.id))) == 0


def test_the_driver_writes_each_kit_once_and_again_only_when_it_was_altered(tmp_path) -> None:
    from leaderboard.challenges import create_challenge
    from orchestrator.kits import with_kits

    url = create_schema(f"sqlite:///{tmp_path / 'c.db'}")
    options = {"num_classes": 4, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 3}
    create_challenge(url, "syn", "synthetic", options)
    root = tmp_path / "runs"
    base = JobSpec(suite="k", task="classification", arch="resnet18", dataset="synthetic", dataset_options=options,
                   recipe={"epochs": 1}, seed=0, input_size=32, storage=str(root))
    other = replace(base, dataset_options={**options, "seed": 5})  # no challenge on these options
    jobs = with_kits(url, root, [base, replace(base, seed=1), other])
    assert [j.kit for j in jobs] == ["_kits/syn", "_kits/syn", None]
    assert [j.job_id for j in jobs] == [base.job_id, replace(base, seed=1).job_id, other.job_id]
    kit = read_kit(root / "_kits" / "syn")
    with session_scope(url) as s:
        held = set(s.scalars(sa.select(HeldLabel.image_id)))
    assert len(kit.image_ids) == 12 and set(kit.image_ids) == held
    images = kit.folder / "images"
    inode = images.stat().st_ino

    assert with_kits(url, root, [base])[0].kit == "_kits/syn" and images.stat().st_ino == inode  # kept as it was
    kit.paths[0].write_bytes(b"not the image")
    assert with_kits(url, root, [base])[0].kit == "_kits/syn"
    assert read_kit(kit.folder).image_ids == kit.image_ids and images.stat().st_ino != inode  # written again
    assert not [p for p in (root / "_kits").iterdir() if p.name.startswith(".")]  # no staging left behind


SUITE = """
name = "kitbase"
architectures = ["resnet18"]
datasets = [{ name = "synthetic", num_classes = 6, image_size = 32, train_per_class = 8, val_per_class = 4, test_per_class = 5 }]
[recipe]
epochs = 1
batch_size = 8
crop_scale = [0.6, 1.0]
"""


@pytest.mark.slow
def test_a_suite_submits_its_baseline_on_the_challenges_kit(ray_head, tmp_path) -> None:
    from leaderboard.challenges import create_challenge
    from orchestrator.baselines import BASELINE_TEAM

    url = create_schema(f"sqlite:///{tmp_path / 'c.db'}")
    options = {"num_classes": 6, "image_size": 32, "train_per_class": 8, "val_per_class": 4, "test_per_class": 5}
    create_challenge(url, "kitbase", "synthetic", options)
    suite, storage = tmp_path / "kitbase.toml", tmp_path / "runs"
    suite.write_text(SUITE)
    env = {k: v for k, v in ray_head.env.items() if k not in ("CONVBENCH_GATE_URL", "CONVBENCH_BASELINE_TOKEN")}
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "run", "--suite", str(suite), "--db", url,
                           "--storage", str(storage), "--address", ray_head.address],
                          check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = runs_in(url)
    assert run.state == "done" and run.config["kit"] == "_kits/kitbase"
    assert "test predictions on the kit _kits/kitbase" in run.log_text

    kit = read_kit(storage / "_kits" / "kitbase")
    with session_scope(url) as s:
        challenge = s.scalar(sa.select(Challenge).where(Challenge.slug == "kitbase"))
        assert hashlib.sha256((kit.folder / "MANIFEST.sha256").read_bytes()).hexdigest() == challenge.kit_sha256
        held = {i: label for i, label in s.execute(sa.select(HeldLabel.image_id, HeldLabel.label)
                                                   .where(HeldLabel.challenge_id == challenge.id))}
        public = set(s.scalars(sa.select(HeldLabel.image_id).where(HeldLabel.challenge_id == challenge.id,
                                                                   HeldLabel.part.is_distinct_from("private"))))
        (entry,) = s.execute(sa.select(Submission, Team.name).join(Team)).all()
        submission, team = entry
    assert team == BASELINE_TEAM and submission.run_id == run.job_id and submission.label == "resnet18"

    guesses = predictions(storage / f"resnet18-synthetic-s0-{run.job_id[:10]}" / "predictions.csv")
    assert list(guesses) == kit.image_ids and set(guesses) == set(held)  # the kit's ids, every held one
    for k in (1, 5):
        independent = float(np.mean([held[i] not in guesses[i][:k] for i in public]))  # the board's part
        assert submission.scores[f"top{k}_err"] == pytest.approx(independent), k
    assert submission.primary_score == pytest.approx(submission.scores["top5_err"])
