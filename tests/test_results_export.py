"""`convbench results export`: a suite's runs, aggregated over seeds into timm-style CSV rows and a PNG chart."""
from __future__ import annotations

import csv
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from convbench.cli import main
from db.engine import create_schema, session_scope
from db.schema import Run

# Student's t, 0.975 quantile, by degrees of freedom: the table every statistics book prints.
T975 = {1: 12.7062047, 2: 4.30265273}
DAY = datetime(2031, 5, 17, 12, 0, tzinfo=UTC)
COLUMNS = ["model", "dataset", "top1", "top1_err", "top5", "top5_err", "top1_err_ci_low", "top1_err_ci_high",
           "top5_err_ci_low", "top5_err_ci_high", "param_count", "gmacs", "gflops", "img_size", "train_img_s", "wall_s",
           "val_images", "seed_count", "seeds", "commit"]
# (arch, dataset) -> per seed: (top-1 error, top-5 error, train img/s, wall s)
RESULTS = {
    ("resnet18", "synthetic"): [(0.12, 0.01, 100.0, 60.0), (0.15, 0.02, 110.0, 62.0), (0.10, 0.01, 90.0, 58.0)],
    ("alexnet", "synthetic"): [(0.40, 0.10, 300.0, 20.0), (0.46, 0.12, 310.0, 21.0)],
    ("resnet18", "digits"): [(0.05, 0.0, 120.0, 30.0)],
    ("sift_fv_svm", "synthetic"): [(0.08, 0.01, 50.0, 60.0), (0.06, 0.0, 52.0, 58.0)],  # the classical row
}
TASK = {"sift_fv_svm": "classical"}  # its own loop, scored as a classification
COST = {"resnet18": (11_181_642, 0.0746e9), "alexnet": (57_044_810, 0.0459e9),  # params, FLOPs per image
        "sift_fv_svm": (102_410, 0.0021e9)}


def run(job_id: str, arch: str, dataset: str, seed: int, top1: float, top5: float, ips: float, wall: float,
        *, suite: str = "cpu", state: str = "done", task: str = "classification", finished: datetime = DAY,
        commit: str = "a" * 40) -> Run:
    params, flops = COST.get(arch, (1, 1.0))
    return Run(job_id=job_id, suite=suite, task=task, arch=arch, dataset=dataset, seed=seed, state=state,
               top1_err=top1, top5_err=top5, params=params, flops=flops, input_size=32, train_ips=ips, wall_s=wall,
               git_commit=commit, metrics={"val_images": 500}, finished_at=finished)


@pytest.fixture
def database(sqlite_url: str) -> str:
    create_schema(sqlite_url)
    with session_scope(sqlite_url) as s:
        for (arch, dataset), seeds in RESULTS.items():
            for seed, values in enumerate(seeds):
                s.add(run(f"{arch}-{dataset}-{seed}", arch, dataset, seed, *values, task=TASK.get(arch, "classification"),
                          finished=DAY - timedelta(hours=seed), commit="b" * 40 if seed == 1 else "a" * 40))
        # What the export must leave out: an older run of a seed that was run again, a failed run, another
        # suite's run, a detection run.
        s.add(run("old-resnet18-synthetic-0", "resnet18", "synthetic", 0, 0.90, 0.5, 1.0, 1.0,
                  finished=DAY - timedelta(days=3)))
        s.add(run("failed", "alexnet", "digits", 0, 0.9, 0.5, 1.0, 1.0, state="failed"))
        s.add(run("other-suite", "alexnet", "synthetic", 5, 0.99, 0.9, 1.0, 1.0, suite="smoke"))
        s.add(run("detector", "rcnn", "synthetic-scenes", 0, None, None, 1.0, 1.0, task="detection"))  # type: ignore[arg-type]
    return sqlite_url


def read_rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        return {(row["model"], row["dataset"]): row for row in reader}


def test_export_writes_csv_rows_that_match_the_runs_and_a_chart(database, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["results", "export", "--db", database, "--suite", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "| resnet18 | synthetic |" in printed
    csv_path, png_path = out / "cpu-2031-05-17.csv", out / "cpu-2031-05-17.png"  # the newest run's date
    rows = read_rows(csv_path)
    assert set(rows) == set(RESULTS)
    for (arch, dataset), seeds in RESULTS.items():
        row, n = rows[(arch, dataset)], len(seeds)
        top1 = [s[0] for s in seeds]
        assert float(row["top1_err"]) == pytest.approx(100 * statistics.mean(top1), abs=1e-3)
        assert float(row["top1"]) == pytest.approx(100 - 100 * statistics.mean(top1), abs=1e-3)
        assert float(row["top5_err"]) == pytest.approx(100 * statistics.mean(s[1] for s in seeds), abs=1e-3)
        assert float(row["train_img_s"]) == pytest.approx(statistics.mean(s[2] for s in seeds), abs=0.05)
        assert float(row["wall_s"]) == pytest.approx(statistics.mean(s[3] for s in seeds), abs=0.05)
        assert int(row["seed_count"]) == n and row["seeds"] == " ".join(map(str, range(n)))
        params, flops = COST[arch]
        assert float(row["param_count"]) == pytest.approx(params / 1e6, abs=0.005)
        assert float(row["gflops"]) == pytest.approx(flops / 1e9, abs=1e-4)
        assert float(row["gmacs"]) == pytest.approx(flops / 2e9, abs=1e-4)
        assert row["img_size"] == "32" and row["val_images"] == "500"
        assert row["commit"] == ("a" * 40 if n == 1 else f"{'a' * 40} {'b' * 40}")
        if n == 1:  # one seed says nothing about the spread
            assert row["top1_err_ci_low"] == row["top1_err_ci_high"] == ""
            continue
        half = T975[n - 1] * statistics.stdev(top1) / n ** 0.5
        low, high = float(row["top1_err_ci_low"]), float(row["top1_err_ci_high"])
        assert low == pytest.approx(100 * max(statistics.mean(top1) - half, 0), abs=1e-3)
        assert high == pytest.approx(100 * (statistics.mean(top1) + half), abs=1e-3)
        assert low < float(row["top1_err"]) < high
    # Best first within a dataset.
    with open(csv_path, newline="") as f:
        order = [(r["dataset"], r["model"]) for r in csv.DictReader(f)]
    assert order == [("digits", "resnet18"), ("synthetic", "sift_fv_svm"), ("synthetic", "resnet18"),
                     ("synthetic", "alexnet")]

    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png_path.stat().st_size > 10_000
    with Image.open(png_path) as image:
        assert image.width >= 600 and image.height >= 300
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 20  # drawn, not one flat colour

    # Exported again from the same database: the same files, the same bytes of CSV.
    before = csv_path.read_bytes()
    assert main(["results", "export", "--db", database, "--suite", "cpu", "--out", str(out)]) == 0
    assert csv_path.read_bytes() == before and sorted(p.name for p in out.iterdir()) == [csv_path.name, png_path.name]


def test_export_refusals_are_one_line(database, tmp_path, capsys):
    assert main(["results", "export", "--db", database, "--suite", "nope", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == "error: suite 'nope' has no finished classification run in this database\n"
    assert main(["results", "--db", database, "export", "--out", str(tmp_path)]) == 2
    assert "needs --suite" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["results", "export", "--db", database, "--suite", "cpu", "--out", str(blocker)]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["results", "export", "--db", f"{database}.typo", "--suite", "cpu"]) == 2
    assert capsys.readouterr().err.startswith("error: no database at")
    # `results` without `export` is as before.
    assert main(["results", "--db", database, "--suite", "cpu", "--format", "csv"]) == 0
    assert "job_id" in capsys.readouterr().out.splitlines()[0]
