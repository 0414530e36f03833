"""Issue #18, point 3: which validation labels a run used is recorded, from the loader to Run detail.

The ImageNet trees are the miniature ones of test_datasets_files (real JPEGs, a devkit meta.mat
written with scipy, a LOC_val_solution.csv); the devkit may sit under any folder name.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch
from test_datasets_files import (
    VAL_WNIDS,
    WNIDS,
    WORDS,
    imagenet_tree,
    labels_of,
    sort_val_into_folders,
    write_devkit,
    write_kaggle,
)

from workers.datasets import DatasetError, imagenet

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")

UNUSUAL = "devkit-2012-unpacked"
GROUND_TRUTH_NAME = "ILSVRC2012_validation_ground_truth.txt"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def move_devkit(root: Path, name: str) -> Path:
    """The devkit written by test_datasets_files, renamed as an unpacked archive often is."""
    shutil.move(root / imagenet.DEVKIT_DATA.parent, root / name)
    return root / name / "data"


def load(root: Path) -> imagenet.Splits:
    return imagenet.load(imagenet.ImageNetConfig(root=str(root), test_per_class=2))


def test_devkit_under_another_folder_name_labels_val_and_is_recorded(tmp_path: Path) -> None:
    root = imagenet_tree(tmp_path)
    write_devkit(root)
    write_kaggle(root, [f"ILSVRC2012_val_{i:08d},{WNIDS[0]} 1 1 2 2" for i in range(1, 10)])  # wrong on purpose
    devkit = move_devkit(root, UNUSUAL)
    splits = load(root)
    truth = devkit / GROUND_TRUTH_NAME
    assert splits.label_source == {"kind": "devkit", "path": f"{UNUSUAL}/data/{GROUND_TRUTH_NAME}",
                                   "sha256": sha256(truth)}
    assert splits.info["val_labels"] == "devkit"
    assert labels_of(splits.val) == [WNIDS.index(w) for w in VAL_WNIDS]  # the devkit's, not the csv's
    assert splits.class_names == [WORDS[w] for w in WNIDS]  # its meta.mat names the classes too


def test_usual_devkit_is_recorded_and_preferred_to_the_csv(tmp_path: Path) -> None:
    root = imagenet_tree(tmp_path)
    write_devkit(root)
    write_kaggle(root)
    source = load(root).label_source
    assert source["kind"] == "devkit" and source["path"] == imagenet.GROUND_TRUTH.as_posix()
    assert source["sha256"] == sha256(root / imagenet.GROUND_TRUTH)


def test_loc_csv_only_is_recorded(tmp_path: Path) -> None:
    root = imagenet_tree(tmp_path)
    write_kaggle(root)
    splits = load(root)
    assert splits.label_source == {"kind": "loc_csv", "path": "LOC_val_solution.csv",
                                   "sha256": sha256(root / "LOC_val_solution.csv")}
    assert labels_of(splits.val) == [WNIDS.index(w) for w in VAL_WNIDS]


def test_a_ground_truth_without_meta_mat_elsewhere_is_no_devkit(tmp_path: Path) -> None:
    root = imagenet_tree(tmp_path)
    write_devkit(root)
    write_kaggle(root)
    devkit = move_devkit(root, UNUSUAL)
    (devkit / "meta.mat").unlink()
    assert load(root).label_source["kind"] == "loc_csv"
    (root / "LOC_val_solution.csv").unlink()
    with pytest.raises(DatasetError, match=f"{devkit / GROUND_TRUTH_NAME} has no meta.mat beside it"):
        load(root)


def test_several_devkits_is_an_error_naming_each(tmp_path: Path) -> None:
    root = imagenet_tree(tmp_path)
    write_devkit(root)
    write_kaggle(root)
    shutil.copytree(root / imagenet.DEVKIT_DATA.parent, root / UNUSUAL)
    with pytest.raises(DatasetError) as error:
        load(root)
    assert str(root / imagenet.DEVKIT_DATA) in str(error.value) and str(root / UNUSUAL / "data") in str(error.value)
    assert "2 devkits" in str(error.value)


def test_val_folders_are_recorded_without_a_file_hash(tmp_path: Path) -> None:
    root = imagenet_tree(tmp_path)
    sort_val_into_folders(root)
    assert load(root).label_source == {"kind": "val_folders", "path": "val", "sha256": None}


def test_a_training_run_records_the_label_source_in_its_metrics(tmp_path: Path) -> None:
    from workers.context import RunContext
    from workers.jobs import JobSpec
    from workers.train import train_classifier

    torch.set_num_threads(2)
    root = imagenet_tree(tmp_path / "imagenet")
    write_devkit(root)
    devkit = move_devkit(root, UNUSUAL)
    spec = JobSpec(suite="test", task="classification", arch="resnet18", dataset="imagenet",
                   dataset_options={"root": str(root), "test_per_class": 2},
                   recipe={"epochs": 1, "batch_size": 8, "lr": 0.01, "crop_scale": [0.8, 1.0], "eval_crop": 1.0},
                   seed=0, input_size=32, storage=str(tmp_path / "runs"))
    result = train_classifier(spec, RunContext(job_id=spec.job_id, storage=spec.folder))
    assert result["metrics"]["label_source"] == {
        "kind": "devkit", "path": f"{UNUSUAL}/data/{GROUND_TRUTH_NAME}",
        "sha256": sha256(devkit / GROUND_TRUTH_NAME)}


def test_run_detail_shows_the_label_source(tmp_path: Path, monkeypatch) -> None:
    from test_site import classification_run, open_page

    from db.engine import create_schema, session_scope

    url = f"sqlite:///{tmp_path / 'site.db'}"
    create_schema(url)
    digest = "1a2b3c4d5e6f" + "0" * 52
    recorded = classification_run(tmp_path, "resnet18", "resnet", 11_181_642, 1.82e9, 0.22, 0.04)
    recorded.metrics = {**recorded.metrics, "label_source": {
        "kind": "devkit", "path": f"{UNUSUAL}/data/{GROUND_TRUTH_NAME}", "sha256": digest}}
    older = classification_run(tmp_path, "vgg11", "vgg", 128_807_306, 7.6e9, 0.41, 0.18)  # metrics without it
    with session_scope(url) as session:
        session.add_all([recorded, older])
    monkeypatch.setenv("CONVBENCH_DB", url)

    app = open_page("run", job="job-resnet18")
    fields = dict(zip(app.table[0].value["field"], app.table[0].value["value"]))
    assert fields["validation labels"] == f"devkit {UNUSUAL}/data/{GROUND_TRUTH_NAME} (sha256 1a2b3c4d5e6f…)"
    app.selectbox[0].set_value("job-vgg11").run()
    assert not app.exception
    assert "validation labels" not in list(app.table[0].value["field"])
