"""The harness: settings, figures, interleaved repetitions, and running the selected benchmarks.

A benchmark is a function `Settings -> list[Figure]`. It measures its baseline and its measured
path with `interleave`, which alternates their order from one repetition to the next, so a burst
of load from elsewhere (this machine is shared) falls on both and a slow drift cancels in the
per-repetition ratios. The reported ratio is the median of those ratios, not the ratio of medians.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

Sample = Callable[[], float]


class Skip(Exception):
    """A benchmark that cannot run here (a module not there yet, a server not reachable); the message says why."""


@dataclass(frozen=True)
class Settings:
    quick: bool = False
    repeats: int = 5
    warmup: int = 1
    threads: int = 2
    workdir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    pg_url: str = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"

    def pick(self, full: Any, quick: Any) -> Any:
        """The full workload, or the smaller one under --quick."""
        return quick if self.quick else full


@dataclass(frozen=True)
class Target:
    op: str  # ">=" or "<="
    value: float
    on: str = "ratio"  # which figure the target bounds: "ratio" or "value"

    def met(self, figure: Figure) -> bool | None:
        x = figure.ratio if self.on == "ratio" else figure.value
        if x is None:
            return None
        return x >= self.value if self.op == ">=" else x <= self.value

    def text(self) -> str:
        return f"{self.on} {self.op} {self.value:g}"


@dataclass
class Figure:
    benchmark: str
    name: str
    workload: dict[str, Any]
    unit: str
    samples: list[float]
    baseline_name: str = ""
    baseline_samples: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)  # measured / baseline, per repetition
    target: Target | None = None
    note: str = ""

    @property
    def value(self) -> float | None:
        return median(self.samples)

    @property
    def baseline(self) -> float | None:
        return median(self.baseline_samples)

    @property
    def ratio(self) -> float | None:
        return median(self.ratios)

    @property
    def best_ratio(self) -> float | None:
        """Best measured over best baseline: load from elsewhere only ever slows a run down, so the best
        repetitions are the least disturbed; a check on the median ratio when the machine is busy."""
        if not (self.samples and self.baseline_samples and self.ratios):
            return None
        best = max if self.higher_is_better else min
        return best(self.samples) / best(self.baseline_samples)

    @property
    def higher_is_better(self) -> bool:
        return self.unit not in ("s", "ms")

    @property
    def met(self) -> bool | None:
        return self.target.met(self) if self.target else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target"] = asdict(self.target) if self.target else None
        d.update(value=self.value, baseline=self.baseline, ratio=self.ratio, best_ratio=self.best_ratio, met=self.met)
        return d


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def interleave(paths: dict[str, Sample], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Every path `warmup` times unrecorded, then `repeats` rounds of every path, the order rotating each round."""
    names = list(paths)
    for _ in range(warmup):
        for name in names:
            paths[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(paths[name]())
    return samples


def ratios(measured: list[float], baseline: list[float]) -> list[float]:
    return [m / b for m, b in zip(measured, baseline) if b]


def compared(benchmark: str, name: str, workload: dict[str, Any], unit: str, samples: dict[str, list[float]],
             measured: str, baseline: str, target: Target | None = None, note: str = "") -> Figure:
    """A figure of path `measured` against path `baseline` from one `interleave` run."""
    return Figure(benchmark, name, workload, unit, samples[measured], baseline, samples[baseline],
                  ratios(samples[measured], samples[baseline]), target, note)


def timed(fn: Callable[[], Any]) -> float:
    """Seconds `fn` took."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def per_second(count: float, fn: Callable[[], Any]) -> float:
    """`count` divided by the seconds `fn` took (images/s, boxes/s, ...)."""
    return count / max(timed(fn), 1e-12)


@dataclass
class Outcome:
    figures: list[Figure] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # benchmark -> why
    errors: dict[str, str] = field(default_factory=dict)  # benchmark -> traceback
    seconds: dict[str, float] = field(default_factory=dict)  # benchmark -> wall time of the benchmark
    load: dict[str, list[float]] = field(default_factory=dict)  # benchmark -> 1/5/15-min load average at its start


def run_benchmarks(selected: dict[str, Callable[[Settings], list[Figure]]], settings: Settings,
                   out: TextIO = sys.stdout, after_each: Callable[[Outcome], None] | None = None) -> Outcome:
    """Runs each benchmark; one that is skipped or fails is recorded and the rest still run.

    `after_each` sees the outcome so far after every benchmark (to save it: a long run that dies
    keeps what it measured).
    """
    outcome = Outcome()
    for name, run in selected.items():
        outcome.load[name] = [round(x, 2) for x in os.getloadavg()]
        print(f"[bench] {name} ... (load average {outcome.load[name][0]})", file=out, flush=True)
        start = time.perf_counter()
        try:
            figures = run(settings)
        except Skip as exc:
            outcome.skipped[name] = str(exc)
            print(f"[bench] {name}: skipped: {exc}", file=out, flush=True)
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others' figures
            outcome.errors[name] = traceback.format_exc()
            print(f"[bench] {name}: failed:\n{outcome.errors[name]}", file=out, flush=True)
        else:
            outcome.figures += figures
            print(f"[bench] {name}: {len(figures)} figures in {time.perf_counter() - start:.0f}s", file=out, flush=True)
        outcome.seconds[name] = time.perf_counter() - start
        if after_each is not None:
            after_each(outcome)
    return outcome
