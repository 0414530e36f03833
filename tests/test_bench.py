"""The performance harness runs and reports; these tests check what it does, never how fast anything is."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from bench.harness import Figure, Settings, Skip, Target, compared, interleave, run_benchmarks
from bench.registry import BENCHMARKS

ROOT = Path(__file__).resolve().parent.parent
FIGURE_KEYS = {"benchmark", "name", "workload", "unit", "samples", "value", "baseline_name", "baseline_samples",
               "baseline", "ratios", "ratio", "best_ratio", "target", "met", "note"}


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_quick_scoring_writes_json_with_every_figure_key(tmp_path):
    out = tmp_path / "bench.json"
    done = run_bench("--quick", "--only", "scoring", "--repeats", "1", "--warmup", "0", "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(out.read_text())
    assert set(doc) >= {"command", "environment", "settings", "figures", "skipped", "errors", "seconds",
                        "load_average_at_start"}
    assert doc["settings"] == {"quick": True, "repeats": 1, "warmup": 0, "threads": doc["environment"]["threads"]}
    assert doc["errors"] == {} and list(doc["seconds"]) == ["scoring"]
    assert {"torch", "pandas", "ray"} <= set(doc["environment"]["versions"])
    figures = doc["figures"]
    assert figures and all(set(f) >= FIGURE_KEYS for f in figures)
    assert {f["benchmark"] for f in figures} == {"scoring"}
    top5 = next(f for f in figures if f["name"] == "top-5 validate + score, vs read_csv")
    assert top5["baseline_name"] == "pandas.read_csv" and len(top5["samples"]) == 1
    assert top5["ratio"] == top5["samples"][0] / top5["baseline_samples"][0]
    assert top5["target"] == {"op": "<=", "value": 3.0, "on": "ratio"} and top5["met"] == (top5["ratio"] <= 3.0)
    assert top5["workload"]["images"] == 10_000 and "pandas" in top5["workload"]["versions"]
    assert "top-5 validate + score, vs read_csv" in done.stdout  # the printed table names the figure too


def test_help_names_every_benchmark_and_unknown_names_are_refused():
    shown = run_bench("--help")
    assert shown.returncode == 0
    assert all(name in shown.stdout for name in BENCHMARKS)
    refused = run_bench("--only", "scoring,nosuch")
    assert refused.returncode == 2 and "unknown benchmark 'nosuch'" in refused.stderr


def test_interleave_warms_up_then_rotates_the_order_each_round():
    calls: list[str] = []

    def path(name: str, value: float):
        return lambda: calls.append(name) or value

    samples = interleave({"a": path("a", 2.0), "b": path("b", 1.0)}, repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert samples == {"a": [2.0, 2.0, 2.0], "b": [1.0, 1.0, 1.0]}


def test_ratio_is_the_median_of_per_round_ratios_and_targets_bound_ratio_or_value():
    figure = compared("x", "f", {}, "s", {"m": [1.0, 4.0, 9.0], "b": [1.0, 2.0, 1.0]}, "m", "b", Target(">=", 2.0))
    assert figure.ratios == [1.0, 2.0, 9.0] and figure.ratio == 2.0 and figure.met is True
    assert figure.value == 4.0 and figure.baseline == 1.0
    assert figure.best_ratio == 1.0 / 1.0  # in seconds the best repetition is the fastest: min over min
    rates = compared("x", "f", {}, "img/s", {"m": [1.0, 4.0, 9.0], "b": [1.0, 2.0, 1.0]}, "m", "b")
    assert rates.best_ratio == 9.0 / 2.0  # in images/s it is the highest: max over max
    assert Target("<=", 3.0, on="value").met(figure) is False
    assert Figure("x", "no samples", {}, "s", [], target=Target("<=", 1.0, on="value")).met is None


def test_a_skipped_or_failing_benchmark_is_recorded_and_the_rest_still_run(tmp_path):
    def skipped(settings: Settings):
        raise Skip("no server")

    def broken(settings: Settings):
        raise RuntimeError("boom")

    def fine(settings: Settings):
        return [Figure("fine", "f", {}, "s", [1.0])]

    outcome = run_benchmarks({"skipped": skipped, "broken": broken, "fine": fine}, Settings(workdir=tmp_path),
                             out=io.StringIO())
    assert outcome.skipped == {"skipped": "no server"}
    assert list(outcome.errors) == ["broken"] and "RuntimeError: boom" in outcome.errors["broken"]
    assert [f.benchmark for f in outcome.figures] == ["fine"]
