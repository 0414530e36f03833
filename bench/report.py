"""The figures as a text table and as JSON."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.harness import Figure, Outcome, Settings

HEADERS = ("benchmark", "figure", "workload", "median", "baseline", "ratio [min-max]", "best/best", "target", "met")
WORKLOAD_SKIP = ("versions",)  # the environment line names them once; the JSON keeps them per figure


def number(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0 or 0.01 <= abs(x) < 1e5:
        return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"
    return f"{x:.3g}"


def workload_text(workload: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in workload.items() if k not in WORKLOAD_SKIP)


def spread(xs: list[float]) -> str:
    return f" [{number(min(xs))}-{number(max(xs))}]" if len(xs) > 1 else ""


def row(f: Figure) -> tuple[str, ...]:
    baseline = f"{number(f.baseline)} ({f.baseline_name})" if f.baseline_samples else "-"
    ratio = number(f.ratio) + spread(f.ratios) if f.ratios else "-"
    met = {True: "yes", False: "NO", None: ""}[f.met]
    return (f.benchmark, f.name, workload_text(f.workload), f"{number(f.value)} {f.unit}", baseline, ratio,
            number(f.best_ratio) if f.ratios else "-", f.target.text() if f.target else "", met)


def table(figures: list[Figure]) -> str:
    rows = [HEADERS, *[row(f) for f in figures]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(figures: list[Figure]) -> str:
    """The same table in Markdown, for a README."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row(f)) + " |" for f in figures]
    return "\n".join(lines)


def summary(outcome: Outcome) -> str:
    judged = [f for f in outcome.figures if f.met is not None]
    met = sum(bool(f.met) for f in judged)
    parts = [f"{met} of {len(judged)} targets met"]
    parts += [f"skipped {name}: {why}" for name, why in outcome.skipped.items()]
    parts += [f"FAILED {name}" for name in outcome.errors]
    return "; ".join(parts)


def document(outcome: Outcome, settings: Settings, environment: dict[str, Any], argv: list[str]) -> dict[str, Any]:
    return {
        "command": "python -m bench " + " ".join(argv),
        "environment": environment,
        "settings": {"quick": settings.quick, "repeats": settings.repeats, "warmup": settings.warmup,
                     "threads": settings.threads},
        "figures": [f.to_dict() for f in outcome.figures],
        "skipped": outcome.skipped,
        "errors": outcome.errors,
        "seconds": outcome.seconds,
        "load_average_at_start": outcome.load,
    }


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str))
