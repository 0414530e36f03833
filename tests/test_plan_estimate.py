"""`plan` says what each job costs (issue #18, point 4): training compute from the zoo's FLOP count, the
dataset registry's train-split size and the recipe's epochs; training time from this machine's finished runs."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import project_env
from sqlalchemy import insert

from orchestrator import estimate as est
from orchestrator.suite import load_suite, parse_suite
from workers.datasets import DATASETS, dataset_train_size
from workers.jobs import JobSpec, Resources

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "suites" / "tiny.toml"


def job_of(arch: str = "resnet18", recipe: dict | None = None, dataset: dict | None = None, **changes) -> JobSpec:
    """A job as the suite expands it: the recipe resolved, the input size raised to what the arch accepts."""
    raw = {"name": "t", "architectures": [arch],
           "datasets": [dataset or {"name": "synthetic", "num_classes": 5, "image_size": 32, "train_per_class": 20}],
           "recipe": {"epochs": 3, "batch_size": 16, **(recipe or {})}}
    return dataclasses.replace(parse_suite(raw, "test").jobs()[0], **changes)


# --- compute --------------------------------------------------------------------------------------------------

def test_training_compute_is_forward_flops_times_images_times_epochs_times_three():
    from workers.zoo import ARCHS, count_flops

    job = job_of()
    real = count_flops(ARCHS["resnet18"].build(5, 32), 32)  # a real build, where the estimate counts on meta
    images_per_epoch = 100 // 16 * 16  # 5 classes x 20, in whole batches of 16: the last partial one is dropped
    cost = est.estimate(job, est.Throughput([]))
    assert cost.images == images_per_epoch * 3
    assert cost.flops == pytest.approx(real * images_per_epoch * 3 * 3)


def test_forward_flops_are_counted_once_per_arch_size_and_classes(monkeypatch):
    calls = []
    monkeypatch.setattr(est, "count_flops", lambda model, size: calls.append(size) or 1.0)
    est.forward_flops.cache_clear()
    try:
        for _ in range(3):
            est.forward_flops("resnet18", 40, 7)
        est.forward_flops("resnet18", 48, 7)
        assert calls == [40, 48]
    finally:
        est.forward_flops.cache_clear()  # the fake count must not outlive this test


@pytest.mark.parametrize(("train_size", "recipe", "workers", "expected"), [
    (100, {"batch_size": 32}, 1, 96),  # a last partial batch is dropped
    (20, {"batch_size": 32}, 1, 20),  # ... unless it is the only one
    (100, {"batch_size": 32, "max_steps_per_epoch": 2}, 1, 64),  # a capped epoch
    (100, {"batch_size": 32, "max_steps_per_epoch": 0}, 1, 96),  # 0: no cap
    (100, {"batch_size": 32}, 2, 96),  # two ranks of 50 images in batches of 16
])
def test_images_of_an_epoch_follow_the_training_loader(train_size, recipe, workers, expected):
    assert est.epoch_images(train_size, recipe, workers) == expected


def test_a_capped_recipe_costs_only_the_steps_it_takes():
    capped = est.estimate(job_of(recipe={"max_steps_per_epoch": 2}), est.Throughput([]))
    assert capped.images == 2 * 16 * 3


def test_unknown_costs_are_none():
    nothing = est.Estimate(None, None, None)
    detection = job_of(task="detection")  # R-CNN's backbone trains on region crops: no per-image cost
    assert est.estimate(detection, est.Throughput([])) == nothing
    absent = job_of(dataset={"name": "imagefolder", "root": "/nonexistent/convbench-data"})
    assert est.estimate(absent, est.Throughput([])) == nothing
    assert est.estimate(job_of(), est.Throughput([])).seconds is None  # no finished run to measure by


# --- throughput ------------------------------------------------------------------------------------------------

def test_throughput_is_the_median_of_matching_runs_only():
    job = job_of()
    here = est.hardware_for(job)
    other = {"task": "classification", "arch": "resnet18", "size": 32, "config": {}, "hardware": here}

    def row(ips, **change):
        r = {**other, **change}
        return r["task"], r["arch"], r["size"], r["config"], r["hardware"], ips

    rows = [row(10.0), row(40.0), row(20.0),  # the matching runs: median 20
            row(1000.0, hardware="NVIDIA H100 x1"), row(1000.0, arch="alexnet"), row(1000.0, size=64),
            row(1000.0, task="detection"), row(1000.0, config={"resources": {"workers": 4}}),
            row(None), row(1000.0, hardware=None)]
    throughput = est.Throughput(rows)
    assert throughput.images_per_s(job) == 20.0
    assert est.estimate(job, throughput).seconds == pytest.approx(est.estimate(job, throughput).images / 20.0)
    assert throughput.images_per_s(job_of("alexnet")) is None
    assert est.Throughput(rows[3:]).images_per_s(job) is None


def test_hardware_string_is_the_one_a_worker_with_the_jobs_cpus_records():
    import torch

    before = torch.get_num_threads()
    job = job_of(resources=Resources(cpus=3))
    assert est.hardware_for(job).endswith(", 3 threads")
    assert torch.get_num_threads() == before
    if not torch.cuda.is_available():
        assert est.hardware_for(job_of(resources=Resources(gpus=1))) is None


def test_totals_count_only_jobs_left_to_run_for_time():
    a, b, c = job_of(seed=0), job_of(seed=1), job_of(seed=2)
    costs = {a.job_id: est.Estimate(10, 2e12, 60.0), b.job_id: est.Estimate(10, 3e12, 120.0),
             c.job_id: est.Estimate(None, None, None)}
    line = est.totals_line([a, b, c], [b, c], costs)
    assert line == ("2 of 3 jobs left to run; compute: 3 TFLOP (+1 unknown) left, 5 TFLOP (+1 unknown) in all; "
                    "est. time left: 2 min (1 of 2 left without an estimate)")


@pytest.mark.parametrize(("value", "text"), [(5e8, "500 MFLOP"), (1.5e12, "1.5 TFLOP"), (2.34e15, "2.34 PFLOP")])
def test_flops_carry_a_unit(value, text):
    assert est.format_flops(value) == text


@pytest.mark.parametrize(("value", "text"), [(0.32, "0.32 s"), (90, "1.5 min"), (7200, "2 h"), (None, "-")])
def test_times_carry_a_unit(value, text):
    assert est.format_seconds(value) == text


# --- the registry's train sizes --------------------------------------------------------------------------------

def test_train_size_of_synthetic_matches_its_loaded_split():
    from workers.datasets import load_dataset

    options = {"num_classes": 3, "train_per_class": 7, "val_per_class": 1, "test_per_class": 1, "image_size": 16}
    assert dataset_train_size("synthetic", options) == 21 == len(load_dataset("synthetic", options).train)


@pytest.mark.parametrize("options", [{}, {"val_fraction": 0.3, "test_fraction": 0.1}])
def test_train_size_of_digits_matches_its_loaded_split(options):
    from workers.datasets import load_dataset

    assert dataset_train_size("digits", options) == len(load_dataset("digits", {"image_size": 8, **options}).train)


def _tree(root: Path, split: str, per_class: int) -> None:
    from PIL import Image

    for name in ("cat", "dog"):
        (root / split / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (8, 8)).save(root / split / name / f"{i}.png")
    (root / split / "cat" / "notes.txt").write_text("not an image")


def test_train_size_of_an_imagefolder_tree(tmp_path):
    from workers.datasets import load_dataset

    _tree(tmp_path, "train", 10)
    # Per class: 10 images, 1 carved out for val and 1 for test: 8 left to train on.
    options = {"root": str(tmp_path), "val_fraction": 0.1, "test_fraction": 0.1}
    assert dataset_train_size("imagefolder", options) == 16 == len(load_dataset("imagefolder", options).train)
    # One class of its first 5 images: 0.5 images each for val and test round up to 1, leaving 3.
    assert dataset_train_size("imagefolder", {**options, "limit_per_class": 5, "limit_classes": 1}) == 3
    _tree(tmp_path, "val", 2)  # a val folder of its own: only the test split is carved out of train
    assert dataset_train_size("imagefolder", options) == 18


def test_train_size_of_detection_lists(tmp_path):
    main = tmp_path / "VOC2007" / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("000005\n000007\n\n000009\n")
    assert dataset_train_size("voc", {"root": str(tmp_path)}) == 3
    assert dataset_train_size("voc", {"root": str(tmp_path), "max_images": 2}) == 2
    assert dataset_train_size("synthetic-scenes", {"train_images": 12}) == 12


def test_a_dataset_without_a_size_hook_is_unknown(monkeypatch):
    monkeypatch.setitem(DATASETS, "synthetic", dataclasses.replace(DATASETS["synthetic"], train_size=None))
    assert dataset_train_size("synthetic", {}) is None
    assert est.estimate(job_of(), est.Throughput([])).images is None


# --- end to end ------------------------------------------------------------------------------------------------

def test_plan_prints_costs_estimates_and_totals(tmp_path):
    from db.engine import make_engine
    from db.schema import Run
    from workers.zoo import ARCHS, count_flops

    url = f"sqlite:///{tmp_path / 'plan.db'}"
    env = project_env()
    upgrade = subprocess.run([sys.executable, "-m", "db", "upgrade", "--db", url], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300, check=False)
    assert upgrade.returncode == 0, upgrade.stderr
    jobs = {job.arch: job for job in load_suite(TINY).jobs()}
    resnet, alexnet = jobs["resnet18"], jobs["alexnet"]
    here = est.hardware_for(resnet)
    finished = {"suite": "earlier", "task": "classification", "dataset": "synthetic",
                "input_size": resnet.input_size, "hardware": here}
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(Run.__table__), [
            {**finished, "job_id": "r1", "arch": "resnet18", "state": "done", "train_ips": 100.0},
            # A failed run's throughput says nothing about a finished one.
            {**finished, "job_id": "a1", "arch": "alexnet", "input_size": alexnet.input_size, "state": "failed",
             "train_ips": 100.0},
        ])
    engine.dispose()

    out = subprocess.run([sys.executable, "-m", "orchestrator", "plan", "--suite", str(TINY), "--db", url],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = lines[0].split()
    assert "size" not in header and "input px" in lines[0] and "compute" in header and "est. time" in lines[0]
    assert any(line.startswith("input px:") for line in lines) and any("x 3 (forward + backward" in l for l in lines)
    assert here in out.stdout  # the legend names the hardware the estimates were looked up by

    # tiny.toml caps each epoch at max_steps_per_epoch batches, well under its 48 training images.
    recipe = resnet.recipe
    images = recipe["epochs"] * recipe["max_steps_per_epoch"] * recipe["batch_size"]
    seconds = est.format_seconds(images / 100.0)
    columns = {name: lines[0].index(name) for name in ("compute", "est. time", "state")}

    def cells(job: JobSpec) -> tuple[str, str, str]:
        line = next(line for line in lines if line.startswith(job.job_id))
        return (line[columns["compute"]:columns["est. time"]].strip(),
                line[columns["est. time"]:columns["state"]].strip(), line[columns["state"]:].strip())

    for arch, job in jobs.items():
        flops = count_flops(ARCHS[arch].build(6, job.input_size), job.input_size) * images * 3
        assert cells(job)[0] == est.format_flops(flops)
    assert cells(resnet)[1:] == (seconds, "to run")
    assert cells(alexnet)[1:] == ("-", "to run")
    total = est.format_flops(sum(count_flops(ARCHS[a].build(6, j.input_size), j.input_size) * images * 3
                                 for a, j in jobs.items()))
    assert lines[-1] == (f"2 of 2 jobs left to run; compute: {total} left, {total} in all; "
                         f"est. time left: {seconds} (1 of 2 left without an estimate)")
