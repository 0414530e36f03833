"""A suite's results as data: one CSV row per architecture and dataset over its seeds, and a chart of top-1
error against compute, both read from the database alone (`convbench results export`).

The CSV follows timm's results CSVs (results-imagenet.csv): errors and accuracies in percent, parameters in
millions, compute in GMACs; then what a benchmark of several seeds needs beside them: each error's 95%
confidence interval across the seeds, how many seeds, throughput, wall time and the commits.

The interval is Student's t over the seeds' errors: mean ± t(0.975, n − 1) · s / √n, s the sample standard
deviation. Three seeds make a wide interval (t = 4.30), as they should: it is what three seeds can say. It is
clipped to [0, 100] %, and empty for a row of one seed. pandas and Altair only: no torch, no held label.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select

from db.engine import session_scope
from db.schema import Run
from workers.tasks import tasks_scored_as

RUN_FIELDS = ("job_id", "arch", "dataset", "seed", "top1_err", "top5_err", "params", "flops", "input_size",
              "train_ips", "wall_s", "git_commit", "metrics", "finished_at")
COLUMNS = ("model", "dataset", "top1", "top1_err", "top5", "top5_err", "top1_err_ci_low", "top1_err_ci_high",
           "top5_err_ci_low", "top5_err_ci_high", "param_count", "gmacs", "gflops", "img_size", "train_img_s",
           "wall_s", "val_images", "seed_count", "seeds", "commit")
CONFIDENCE = 0.95
FLOPS_PER_MAC = 2  # Run.flops is torch's counter: two FLOPs per multiply-accumulate


class ExportError(ValueError):
    """Nothing to export, or a place it cannot be written to: one line for the user."""


@dataclass(frozen=True)
class Exported:
    csv: Path
    chart: Path
    table: pd.DataFrame  # what the CSV holds
    runs: int  # how many runs it aggregates


def suite_runs(url: str | None, suite: str) -> pd.DataFrame:
    """The suite's finished classification runs (the networks' and the classical pipeline's) that have a top-1
    error; of runs of one architecture, dataset and seed (a suite edited and run again), only the newest finished,
    so each seed counts once."""
    query = (select(*[getattr(Run, c) for c in RUN_FIELDS])
             .where(Run.suite == suite, Run.state == "done", Run.task.in_(tasks_scored_as("classification")),
                    Run.top1_err.is_not(None)))
    with session_scope(url) as s:
        rows = [tuple(row) for row in s.connection().execute(query)]
    frame = pd.DataFrame(rows, columns=list(RUN_FIELDS))
    frame["finished_at"] = pd.to_datetime(frame["finished_at"], utc=True)
    frame = frame.sort_values(["finished_at", "job_id"], na_position="first")
    return frame.drop_duplicates(["arch", "dataset", "seed"], keep="last").reset_index(drop=True)


def t_quantile(p: float, dof: int) -> float:
    from scipy.stats import t  # scikit-learn's dependency; imported here so that the module loads without it

    return float(t.ppf(p, dof))


def t_interval(values: pd.Series) -> tuple[float, float]:
    """The mean's two-sided CONFIDENCE interval over `values` (Student's t); NaN for fewer than two."""
    n = int(values.count())
    if n < 2:
        return math.nan, math.nan
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    half = t_quantile(0.5 + CONFIDENCE / 2, n - 1) * sd / math.sqrt(n)
    return max(mean - half, 0.0), min(mean + half, 1.0)


def _pct(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(100 * value, 3)


def _round(value: Any, scale: float = 1.0, digits: int = 3) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value) / scale, digits)


def _val_images(metrics: pd.Series) -> int | None:
    counts: list[int] = [m["val_images"] for m in metrics if isinstance(m, dict) and isinstance(m.get("val_images"), int)]
    return max(counts) if counts else None


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (architecture, dataset) in COLUMNS, best top-1 error first within each dataset."""
    rows = []
    for (arch, dataset), group in runs.groupby(["arch", "dataset"], sort=False):
        top1, top5 = group["top1_err"].astype(float), group["top5_err"].astype(float)
        (t1_lo, t1_hi), (t5_lo, t5_hi) = t_interval(top1), t_interval(top5.dropna())
        commits = sorted({c for c in group["git_commit"] if isinstance(c, str) and c})
        sizes = group["input_size"].dropna()
        rows.append({
            "model": arch, "dataset": dataset,
            "top1": _pct(1 - top1.mean()), "top1_err": _pct(top1.mean()),
            "top5": _pct(1 - top5.mean()), "top5_err": _pct(top5.mean()),
            "top1_err_ci_low": _pct(t1_lo), "top1_err_ci_high": _pct(t1_hi),
            "top5_err_ci_low": _pct(t5_lo), "top5_err_ci_high": _pct(t5_hi),
            "param_count": _round(group["params"].mean(), 1e6, 2),
            "gmacs": _round(group["flops"].mean(), FLOPS_PER_MAC * 1e9, 4),
            "gflops": _round(group["flops"].mean(), 1e9, 4),
            "img_size": int(sizes.iloc[0]) if len(sizes) else None,
            "train_img_s": _round(group["train_ips"].mean(), 1, 1), "wall_s": _round(group["wall_s"].mean(), 1, 1),
            "val_images": _val_images(group["metrics"]),
            "seed_count": int(group["seed"].nunique()), "seeds": " ".join(map(str, sorted(group["seed"].unique()))),
            "commit": " ".join(commits),
        })
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame = frame.sort_values(["dataset", "top1_err", "model"]).reset_index(drop=True)
    return frame.astype({"img_size": "Int64", "val_images": "Int64"})


def chart(table: pd.DataFrame, suite: str) -> Any:
    """Top-1 error (%) against GFLOPs per image (log scale) with the seeds' 95% interval as error bars, one
    panel per dataset, each point named by its architecture."""
    import altair as alt

    data = table.assign(ci_low=table["top1_err_ci_low"].fillna(table["top1_err"]),
                        ci_high=table["top1_err_ci_high"].fillna(table["top1_err"]))
    x = alt.X("gflops:Q", title="GFLOPs per image (forward, at the trained size)", scale=alt.Scale(type="log"))
    tooltip = ["model", "dataset", "top1_err", "top1_err_ci_low", "top1_err_ci_high", "gflops", "seed_count"]
    base = alt.Chart().encode(x=x, color=alt.Color("model:N", legend=None))
    bars = base.mark_rule(strokeWidth=2).encode(y=alt.Y("ci_low:Q", title="top-1 error (%), mean and 95% CI"),
                                               y2="ci_high:Q")
    points = base.mark_point(filled=True, size=70).encode(y="top1_err:Q", tooltip=tooltip)
    labels = base.mark_text(align="left", dx=7, dy=-7, fontSize=11).encode(y="top1_err:Q", text="model:N")
    seeds = int(table["seed_count"].max()) if len(table) else 0
    return (alt.layer(bars, points, labels, data=data)
            .properties(width=360, height=300)
            .facet(column=alt.Column("dataset:N", title=None))
            .properties(title=f"{suite}: top-1 error against compute (up to {seeds} seeds; bars: t-interval)"))


def file_date(runs: pd.DataFrame) -> str:
    """The date in the files' names: of the newest finished run, so that exporting again names the same files."""
    newest = runs["finished_at"].max()
    return (datetime.now(UTC) if pd.isna(newest) else newest).strftime("%Y-%m-%d")


def export(url: str | None, suite: str, out: Path) -> Exported:
    """Writes `<out>/<suite>-<date>.csv` and `.png`; ExportError when the suite has no finished run."""
    runs = suite_runs(url, suite)
    if runs.empty:
        raise ExportError(f"suite {suite!r} has no finished classification run in this database")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file, not a folder")
    table = aggregate(runs)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{suite}-{file_date(runs)}"
    csv_path, png_path = stem.with_suffix(".csv"), stem.with_suffix(".png")
    table.to_csv(csv_path, index=False)
    chart(table, suite).save(str(png_path), format="png", scale_factor=2)
    return Exported(csv_path, png_path, table, len(runs))


def markdown(table: pd.DataFrame) -> str:
    """The export as a Markdown table for a README: error with its interval, compute, seeds."""
    lines = ["| model | dataset | top-1 err % (95% CI) | top-5 err % | GFLOPs | params (M) | seeds |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in table.itertuples():
        ci = "" if pd.isna(row.top1_err_ci_low) else f" ({row.top1_err_ci_low:.1f}–{row.top1_err_ci_high:.1f})"
        lines.append(f"| {row.model} | {row.dataset} | {row.top1_err:.1f}{ci} | {row.top5_err:.1f} | "
                     f"{row.gflops:.3f} | {row.param_count:.2f} | {row.seed_count} |")
    return "\n".join(lines)
