"""Creating a challenge costs the test split's rendering and little more (issues #12, #14).

Since #14 a challenge stores its participant kit, so a generated dataset's test images are rendered (torch) once,
at creation; the held labels themselves are still read without torch (the tests below)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sqlalchemy import select
from test_datasets_files import imagenet_tree, write_kaggle

from db.engine import create_schema, session_scope
from db.schema import HeldLabel
from leaderboard.challenges import create_challenge, get_challenge
from workers.datasets import DATASETS, dataset_class_names, held_test_labels, load_dataset, synthetic
from workers.datasets.base import opaque_test_split

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = ["num_classes=10", "image_size=32", "train_per_class=16", "val_per_class=8", "test_per_class=8"]
# Peak RSS of the command in a child of a small wrapper: RUSAGE_CHILDREN then covers that one process only.
MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"rc": proc.returncode, "out": proc.stdout + proc.stderr, "s": time.perf_counter() - start,
                  "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def measured(*command: str) -> dict:
    wrapper = subprocess.run([sys.executable, "-c", MEASURE, *command], cwd=ROOT,
                             capture_output=True, text=True, timeout=300, check=True)
    return json.loads(wrapper.stdout)


def test_create_challenge_takes_little_time_and_memory(tmp_path: Path) -> None:
    # Before #12 it took 6.9 s (23 s on a busy machine) and 1.3 GB for ten class names and 80 labels. Now the
    # kit's 80 images are rendered: bounded by what the renderer's own imports cost on this machine.
    stack = "import leaderboard.admin, torch, torchvision, workers.datasets.synthetic"
    baseline = min((measured(sys.executable, "-c", stack) for _ in range(2)), key=lambda m: m["s"])
    options = [arg for option in OPTIONS for arg in ("--option", option)]
    result = measured(sys.executable, "-m", "leaderboard", "admin", "create-challenge", "--db",
                      f"sqlite:///{tmp_path}/c.db", "--slug", "s", "--dataset", "synthetic", *options)
    assert result["rc"] == 0 and "challenge 's'" in result["out"], result["out"]
    assert result["rss_mb"] < baseline["rss_mb"] + 300, (result, baseline)
    assert result["s"] < 2 * baseline["s"] + 2.0, (result, baseline)


def test_the_held_labels_are_the_rendered_test_split_labels() -> None:
    # The torch-free labels must be exactly those of the images a worker renders (via torch.randperm).
    for options in ({}, {"seed": 3, "num_classes": 25, "test_per_class": 7}, {"seed": 123456, "test_per_class": 1}):
        config = synthetic.SyntheticConfig(**options)
        _, labels = synthetic._split(config, config.test_per_class, 3)
        order, ids = opaque_test_split(len(labels), config.seed)
        assert held_test_labels("synthetic", options) == dict(zip(ids, labels[torch.as_tensor(order)].tolist()))


@pytest.mark.parametrize("seed", [0, 1, 2001, 2**32 + 7])
def test_torch_randperm_without_torch_matches_torch(seed: int) -> None:
    for n in (1, 2, 5, 80, 1000, 4099):
        expected = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        assert synthetic.torch_randperm(n, seed).tolist() == expected, (seed, n)


def test_class_names_without_loading_match_the_loaded_ones(tmp_path: Path) -> None:
    root = imagenet_tree(tmp_path / "imagenet")
    write_kaggle(root)
    cases = {"synthetic": {"num_classes": 13}, "digits": {}, "imagenet": {"root": str(root), "limit_classes": 2,
                                                                        "test_per_class": 2}}
    for name, options in cases.items():
        assert dataset_class_names(name, options) == load_dataset(name, options).class_names, name
    assert all(entry.class_names for entry in DATASETS.values())


def test_a_created_challenge_holds_the_loaded_names_and_the_rendered_labels(tmp_path: Path) -> None:
    url = create_schema(f"sqlite:///{tmp_path}/c.db")
    options = {"num_classes": 4, "test_per_class": 3, "seed": 5}
    create_challenge(url, "four", "synthetic", options)
    with session_scope(url) as session:
        challenge = get_challenge(session, "four")
        held = dict(session.execute(select(HeldLabel.image_id, HeldLabel.label)
                                    .where(HeldLabel.challenge_id == challenge.id)).all())
        names = challenge.class_names
    assert names == load_dataset("synthetic", options).class_names
    config = synthetic.SyntheticConfig(**options)
    _, labels = synthetic._split(config, config.test_per_class, 3)  # what a worker renders, through torch
    order, ids = opaque_test_split(len(labels), config.seed)
    assert held == dict(zip(ids, labels[torch.as_tensor(order)].tolist()))
