"""The thin end-to-end path: suite -> Ray -> database -> leaderboard, and the CLIs around it."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import runs_in

from orchestrator.suite import load_suite, parse_suite
from workers.typed import ConfigError
from workers.zoo import ARCHS

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "suites" / "tiny.toml"


def run_cli(*args: str, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.parametrize("module", ["orchestrator", "leaderboard", "workers.zoo", "bench", "db"])
def test_every_cli_explains_itself(module):
    out = run_cli("-m", module, "--help", timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


@pytest.mark.parametrize("mutation, named", [
    ({"architectures": ["resnet18", "resnet9000"]}, "architectures: unknown architecture 'resnet9000'"),
    ({"recipe": {"epochs": "three"}}, "recipe.epochs: expected an integer"),
    ({"recipe": {"learning_rate": 0.1}}, "recipe.learning_rate: unknown field"),
    ({"datasets": [{"name": "synthetic", "num_classes": 0}]}, "datasets[0].num_classes: must be at least 1"),
    ({"datasets": [{"name": "mnist"}]}, "datasets[0].name: unknown dataset 'mnist'"),
    ({"resources": {"gpus": -1}}, "resources.gpus: must not be negative"),
    ({"seeds": "0"}, "seeds: expected a non-empty list of integers"),
    ({"input_size": 40, "architectures": ["inception_v3"]}, "input_size: inception_v3 needs at least 75 px"),
    ({"colour": "blue"}, "colour: unknown field"),
])
def test_malformed_suite_names_the_field(mutation, named):
    import tomllib

    raw = tomllib.loads(TINY.read_text()) | mutation
    with pytest.raises(ConfigError) as err:
        parse_suite(raw, "suites/bad.toml")
    assert str(err.value).startswith("suites/bad.toml:"), err.value
    assert named in str(err.value)


def test_malformed_suite_file_fails_before_running(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.read_text().replace('epochs = 2', 'epochs = "two"'))
    out = run_cli("-m", "orchestrator", "run", "--suite", str(bad), "--db", f"sqlite:///{tmp_path}/x.db", timeout=120)
    assert out.returncode == 2
    assert f"{bad}: recipe.epochs: expected an integer" in out.stderr
    assert not (tmp_path / "runs").exists()


def test_suite_expands_into_jobs_with_stable_identity():
    jobs = load_suite(TINY).jobs()
    assert [j.arch for j in jobs] == ["resnet18", "alexnet"]
    assert jobs[1].input_size == 63  # AlexNet's smallest input, above the data's 32 px
    again = load_suite(TINY).jobs()
    assert [j.job_id for j in jobs] == [j.job_id for j in again]
    assert len({j.job_id for j in jobs}) == 2


@pytest.mark.slow
def test_smoke_path_writes_one_row_per_job_and_never_twice(ray_head, tmp_path):
    url = f"sqlite:///{tmp_path}/convbench.db"
    args = ["-m", "orchestrator", "run", "--suite", str(TINY), "--db", url, "--storage", str(tmp_path / "runs"),
            "--address", ray_head.address]
    first = run_cli(*args, env=ray_head.env)
    assert first.returncode == 0, first.stdout + first.stderr
    found = runs_in(url)
    assert sorted((r.arch, r.dataset) for r in found) == [("alexnet", "synthetic"), ("resnet18", "synthetic")]
    for r in found:
        assert r.state == "done"
        assert 0.0 <= r.top5_err <= r.top1_err <= 1.0
        assert r.params > 0 and r.flops > 0 and r.epochs_done == 2 and len(r.history) == 2
        assert r.git_commit and r.versions["torch"] and r.hardware and r.node
        assert Path(r.checkpoint).is_file()
    assert "streamlit run leaderboard/app.py" in first.stdout
    assert "resnet18" in first.stdout and "top-5 err" in first.stdout

    second = run_cli(*args, env=ray_head.env)
    assert second.returncode == 0, second.stderr
    assert "2 already done, 0 to run" in second.stdout
    assert len(runs_in(url)) == 2

    plan = run_cli("-m", "orchestrator", "plan", "--suite", str(TINY), "--db", url, "--storage", str(tmp_path / "runs"))
    assert "0 of 2 jobs left to run" in plan.stdout

    import os

    from streamlit.testing.v1 import AppTest
    os.environ["CONVBENCH_DB"] = url
    try:
        app = AppTest.from_file(str(ROOT / "leaderboard" / "app.py"), default_timeout=60).run()
    finally:
        del os.environ["CONVBENCH_DB"]
    assert not app.exception
    table = app.dataframe[0].value
    assert list(table["architecture"]) == sorted(table["architecture"], key=lambda a: {r.arch: r.top5_err for r in found}[a])
    assert set(table["architecture"]) == {"resnet18", "alexnet"}


@pytest.mark.slow
def test_ray_job_submit_runs_the_suite(ray_head, tmp_path):
    url = f"sqlite:///{tmp_path}/jobs.db"
    for _ in range(5):  # a loaded head can lose its job agent for a while: Ray answers "try again later"
        out = subprocess.run(
            ["ray", "job", "submit", "--address", ray_head.dashboard, "--working-dir", ".", "--",
             "python", "-m", "orchestrator", "run", "--suite", "tests/suites/tiny.toml", "--db", url,
             "--storage", str(tmp_path / "runs")],
            cwd=ROOT, env=ray_head.env, capture_output=True, text=True, timeout=600, check=False)
        if "No available agent" not in out.stderr:
            break
        time.sleep(10)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "succeeded" in out.stdout + out.stderr
    assert sorted(r.arch for r in runs_in(url) if r.state == "done") == ["alexnet", "resnet18"]


def test_detection_track_is_validated_before_anything_runs():
    import tomllib

    smoke = tomllib.loads((ROOT / "suites" / "smoke.toml").read_text())
    jobs = parse_suite(smoke, "suites/smoke.toml").jobs()
    # "all" is the lecture's whole table: the networks, the classical pipeline (its own loop) and the detector.
    assert {j.task for j in jobs} == {"classification", "classical", "detection"}
    smoke["detection"]["recipe"]["max_proposal"] = 10
    with pytest.raises(ConfigError, match=r"suites/smoke.toml: detection.recipe.max_proposal: unknown field"):
        parse_suite(smoke, "suites/smoke.toml")
    del smoke["detection"]["recipe"]["max_proposal"]
    smoke["detection"]["datasets"] = [{"name": "synthetic"}]
    with pytest.raises(ConfigError, match="is a classification dataset, not detection"):
        parse_suite(smoke, "suites/smoke.toml")


@pytest.mark.parametrize("name", ["smoke", "cpu", "imagenet", "voc"])
def test_every_shipped_suite_is_valid(name):
    suite = load_suite(ROOT / "suites" / f"{name}.toml")
    jobs = suite.jobs()
    assert jobs and len({j.job_id for j in jobs}) == len(jobs)
    if name == "smoke":
        assert {j.arch for j in jobs if j.task in ("classification", "classical")} == set(ARCHS)
    if name == "imagenet":
        assert {j.input_size for j in jobs} == {224, 299} and all(j.resources.workers == 8 for j in jobs)


@pytest.mark.slow
def test_full_smoke_suite_writes_every_job_to_postgresql(ray_head, pg_url, tmp_path):
    smoke = ROOT / "suites" / "smoke.toml"
    jobs = load_suite(smoke).jobs()
    out = run_cli("-m", "orchestrator", "run", "--suite", str(smoke), "--db", pg_url,
                  "--storage", str(tmp_path / "runs"), "--address", ray_head.address, env=ray_head.env, timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    found = {r.job_id: r for r in runs_in(pg_url)}
    assert set(found) == {j.job_id for j in jobs}
    assert {r.arch for r in found.values() if r.task in ("classification", "classical")} == set(ARCHS)
    for r in found.values():
        assert r.state == "done", (r.arch, r.task, r.error)
        assert r.params > 0 and r.wall_s > 0 and r.versions["torch"]
        if r.task in ("classification", "classical"):
            assert 0.0 <= r.top5_err <= r.top1_err <= 1.0, r.arch
        else:
            assert 0.0 <= r.map50 <= 1.0, r.arch
