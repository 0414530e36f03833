"""Page data shaped from the query frames (exports, chart inputs, counts), and the pages' shared guard.

The data functions are pure pandas on what leaderboard.queries returned, so nothing here can reach a
held label.
"""
from __future__ import annotations

import csv
import json
import math
from typing import Any

import pandas as pd

from leaderboard.queries import RUN_METRICS, STATES, board_columns
from workers.metric_registry import PRIMARY, Metric, board_metrics, task_metrics

# timm's results CSVs (results-imagenet.csv): accuracies and errors in percent, parameters in millions.
# The metric columns of the exports beyond these follow from workers.metric_registry (`board` metrics).
TIMM_COLUMNS = ("model", "top1", "top1_err", "top5", "top5_err", "param_count", "img_size")
# The learning curves shown first: the listed metrics on validation (as the loops log them), then the loss.
CURVES = (*(f"val_{name}" for name in RUN_METRICS), "train_loss")
JSON_FIELDS = ("rank", "entry", "team", "baseline", "label", "description", "code_url", "params", "flops",
               "input_size", "arch", "run_id", "submitted", "submission_id", "vs_leader")
ENTRY_TEXT = ("description", "code_url")  # a team's own words about an entry, the last columns of a CSV export


# What makes a spreadsheet read a cell as a formula when it leads: OWASP's = + - @ tab CR, ASVS's NUL, a line
# feed, and their full-width forms (an IME types these, and some spreadsheets take them as the ASCII ones).
FORMULA_LEADS = frozenset("=+-@\t\r\n\0＝＋－＠")


def spreadsheet_safe(value: Any) -> Any:
    """A text cell a spreadsheet shows as text (OWASP, CSV injection): one that starts with a formula
    character, even after spaces, gets a leading single quote. Anything else comes back unchanged.

    A team's name or an entry's label is anyone's text; `=HYPERLINK(...)` in an export would run in the
    spreadsheet of whoever opens it. The quote is shown by plain-text readers: the lesser evil.
    """
    if isinstance(value, str) and value and (value[0] in FORMULA_LEADS or value.lstrip()[:1] in FORMULA_LEADS):
        return "'" + value
    return value


def spreadsheet_frame(frame: pd.DataFrame, columns: tuple[str, ...] | None = None) -> pd.DataFrame:
    """`frame` with its text cells (those of `columns`, else of every column) made spreadsheet_safe."""
    out = frame.copy()
    for name in columns if columns is not None else out.columns:
        if name in out and (out[name].dtype == object or pd.api.types.is_string_dtype(out[name])):
            out[name] = out[name].map(spreadsheet_safe)
    return out


def run_label(arch: str, dataset: str, seed: Any, job_id: str) -> str:
    return f"{arch} · {dataset} · seed {seed} · {job_id[:8]}"


def _percent(value: Any, digits: int = 3) -> float | None:
    return None if pd.isna(value) else round(100 * float(value), digits)


def _millions(value: Any, scale: float = 1e6, digits: int = 2) -> float | None:
    return None if pd.isna(value) else round(float(value) / scale, digits)


def _plain(value: Any) -> Any:
    """A cell as JSON takes it: NaN and NA become null, timestamps ISO text, numpy scalars Python ones."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _int_or_none(value: Any) -> int | None:
    return None if pd.isna(value) else int(value)


def _stamp(value: Any) -> str:
    return "" if pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _export_value(metric: Metric) -> Any:
    """How an export writes a metric's value: a fraction shown in percent as a percentage (timm's way)."""
    return _percent if metric.percent else (lambda v: None if pd.isna(v) else round(float(v), 6))


def _interval_metrics(task: str) -> list[Metric]:
    """The board metrics whose interval an export writes, in declaration order: the primary one (the verdicts
    compare its intervals; empty where the scorer gives none) and those with a bootstrap."""
    return [m for m in task_metrics(task) if m.name in board_columns(task)
            and (m.name == PRIMARY[task] or m.bootstrap is not None)]


def _interval_columns(out: pd.DataFrame, board: pd.DataFrame, metric: Metric) -> None:
    out[f"{metric.name}_ci_low"] = board[f"{metric.name}_lo"].map(_export_value(metric))
    out[f"{metric.name}_ci_high"] = board[f"{metric.name}_hi"].map(_export_value(metric))


def _entry_text(out: pd.DataFrame, board: pd.DataFrame) -> None:
    """The entries' descriptions and code URLs as the last columns ("" where none was given)."""
    for name in ENTRY_TEXT:
        out[name] = board[name].fillna("") if name in board else ""


def classification_csv_rows(board: pd.DataFrame) -> pd.DataFrame:
    """The board in timm's results-CSV columns, then convbench's own (other metrics, CIs, team, verdict)."""
    out = pd.DataFrame({
        "model": board["entry"],
        "top1": [None if pd.isna(e) else round(100 - 100 * e, 3) for e in board["top1_err"]],
        "top1_err": board["top1_err"].map(_percent),
        "top5": [None if pd.isna(e) else round(100 - 100 * e, 3) for e in board["top5_err"]],
        "top5_err": board["top5_err"].map(_percent),
        "param_count": board["params"].map(_millions),
        "img_size": board["input_size"].map(_int_or_none).astype("Int64"),
        "gflops": board["flops"].map(lambda v: _millions(v, 1e9, 3)),
        "rank": board["rank"], "team": board["team"], "baseline": board["baseline"],
    })
    for metric in task_metrics("classification"):
        if metric.name in board_columns("classification") and metric.name not in TIMM_COLUMNS:
            out[metric.name] = board[metric.name].map(_export_value(metric))
    for metric in _interval_metrics("classification"):
        _interval_columns(out, board, metric)
    out["vs_leader"], out["submitted"] = board["vs_leader"], board["submitted"].map(_stamp)
    out["run_id"] = board["run_id"].fillna("")
    _entry_text(out, board)
    return out


def detection_csv_rows(board: pd.DataFrame) -> pd.DataFrame:
    """The board's entries, each board metric with its interval beside it, then cost, verdict and run."""
    out = pd.DataFrame({"rank": board["rank"], "model": board["entry"], "team": board["team"],
                        "baseline": board["baseline"]})
    intervals = _interval_metrics("detection")
    for metric in board_metrics("detection"):
        out[metric.name] = board[metric.name].map(_export_value(metric))
        if metric in intervals:
            _interval_columns(out, board, metric)
    out["param_count"] = board["params"].map(_millions)
    out["gflops"] = board["flops"].map(lambda v: _millions(v, 1e9, 3))
    out["img_size"] = board["input_size"].map(_int_or_none).astype("Int64")
    out["vs_leader"], out["submitted"] = board["vs_leader"], board["submitted"].map(_stamp)
    out["run_id"] = board["run_id"].fillna("")
    _entry_text(out, board)
    return out


def board_csv(board: pd.DataFrame, task: str) -> str:
    """The board as CSV, safe to open in a spreadsheet: formula-like text is quoted away (spreadsheet_safe)
    and every text cell is in double quotes, so a separator inside one (a `;` in a locale that splits on
    it) cannot start a new cell that begins with a formula."""
    rows = classification_csv_rows(board) if task == "classification" else detection_csv_rows(board)
    return spreadsheet_frame(rows).to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC)


def board_records(board: pd.DataFrame, task: str) -> list[dict[str, Any]]:
    records = []
    for _, row in board.iterrows():
        record = {name: _plain(row.get(name)) for name in JSON_FIELDS}
        for key in board_columns(task):
            low, high = _plain(row[f"{key}_lo"]), _plain(row[f"{key}_hi"])
            record[key] = _plain(row[key])
            record[f"{key}_ci95"] = [low, high] if low is not None and high is not None else None
        records.append(record)
    return records


def board_json(board: pd.DataFrame, challenge: dict[str, Any]) -> str:
    """The board as JSON: the challenge's public description, then one object per entry (fractions, not %).
    `ladder_threshold` in the head (a Ladder challenge only): the entries' scores are the Ladder's shown ones, with no
    interval."""
    task = challenge.get("task", "classification")
    head = {key: _plain(challenge.get(key)) for key in ("slug", "title", "task", "dataset", "metric")}
    if _plain(challenge.get("ladder_threshold")) is not None:
        head["ladder_threshold"] = _plain(challenge["ladder_threshold"])
    return json.dumps({"challenge": head, "entries": board_records(board, task)}, indent=2)


# --- architectures ---------------------------------------------------------------------------------

def curve_metrics(histories: pd.DataFrame) -> list[str]:
    """The numeric per-epoch series the runs logged, validation error first."""
    skip = {"job_id", "arch", "dataset", "seed", "epoch", "run"}
    found = [c for c in histories.columns if c not in skip and pd.api.types.is_numeric_dtype(histories[c])]
    return [c for c in CURVES if c in found] + [c for c in found if c not in CURVES]


def with_run_labels(histories: pd.DataFrame) -> pd.DataFrame:
    if histories.empty:
        return histories.assign(run=pd.Series(dtype=object))
    labels = [run_label(a, d, s, j) for a, d, s, j in
              zip(histories["arch"], histories["dataset"], histories["seed"], histories["job_id"])]
    return histories.assign(run=labels)


# --- detection -----------------------------------------------------------------------------------

def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def per_class_ap(runs: pd.DataFrame) -> pd.DataFrame:
    """AP@0.5 and COCO AP per class and run, from Run.metrics; runs without them add no rows."""
    rows = []
    for _, run in runs.iterrows():
        metrics = _mapping(run["metrics"])
        ap50, ap_coco = _mapping(metrics.get("ap50")), _mapping(metrics.get("ap_coco"))
        for name in list(ap50) + [n for n in ap_coco if n not in ap50]:
            rows.append({"run": run_label(run["arch"], run["dataset"], run["seed"], run["job_id"]),
                         "job_id": run["job_id"], "class": str(name), "ap50": _number(ap50.get(name)),
                         "ap_coco": _number(ap_coco.get(name))})
    return pd.DataFrame(rows, columns=["run", "job_id", "class", "ap50", "ap_coco"])


def proposal_recall_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run and proposal method: recall at IoU 0.5/0.7, boxes and time per image, and mAP@0.5 with them."""
    rows = []
    for _, run in runs.iterrows():
        metrics = _mapping(run["metrics"])
        stats, by_method = _mapping(metrics.get("proposals")), _mapping(metrics.get("map50_by_proposals"))
        for method in list(stats) + [m for m in by_method if m not in stats]:
            entry = _mapping(stats.get(method))
            rows.append({"run": run_label(run["arch"], run["dataset"], run["seed"], run["job_id"]),
                         "job_id": run["job_id"], "method": str(method),
                         "recall@0.5": _number(entry.get("recall@0.5")), "recall@0.7": _number(entry.get("recall@0.7")),
                         "per_image": _number(entry.get("per_image")),
                         "seconds_per_image": _number(entry.get("seconds_per_image")),
                         "map50": _number(by_method.get(method))})
    columns = ["run", "job_id", "method", "recall@0.5", "recall@0.7", "per_image", "seconds_per_image", "map50"]
    return pd.DataFrame(rows, columns=columns)


# --- campaign ------------------------------------------------------------------------------------

def state_counts(counts: pd.DataFrame) -> dict[str, int]:
    """Jobs per state from per-suite-and-state counts (suite, state, jobs): the four known states always
    present (in order), any other state after them."""
    totals = counts.groupby("state")["jobs"].sum().to_dict() if len(counts) else {}
    ordered = {state: int(totals.pop(state, 0)) for state in STATES}
    return ordered | {str(k): int(v) for k, v in totals.items()}


def suite_states(counts: pd.DataFrame) -> pd.DataFrame:
    """Suite x state job counts, with a total column, from per-suite-and-state counts (suite, state, jobs)."""
    if counts.empty:
        return pd.DataFrame(columns=["suite", *STATES, "total"])
    table = counts.pivot_table(index="suite", columns="state", values="jobs", aggfunc="sum", fill_value=0)
    for state in STATES:
        if state not in table:
            table[state] = 0
    others = [c for c in table.columns if c not in STATES]
    table = table[[*STATES, *others]].astype(int)
    table["total"] = table.sum(axis=1)
    return table.reset_index().rename_axis(columns=None)


TIMELINE_POINTS = 120  # samples of the jobs-over-time chart: smooth enough, and a small chart spec


def state_timeline(times: pd.DataFrame, points: int = TIMELINE_POINTS) -> pd.DataFrame:
    """How many jobs were in each state at evenly spaced moments from the first job queued to the last event
    (columns: time, state, jobs). A job is queued from created_at, running from started_at, and done or
    failed from finished_at (a failed job without one: from started_at, else created_at)."""
    if times.empty or times["created_at"].isna().all():
        return pd.DataFrame(columns=["time", "state", "jobs"])
    created, started, finished = times["created_at"], times["started_at"], times["finished_at"]
    failed = times["state"] == "failed"
    ended = finished.where(~failed | finished.notna(), started.fillna(created))
    ended = ended.where(times["state"].isin(["done", "failed"]))
    start = created.min()
    end = pd.concat([created, started, ended]).max()
    grid = pd.date_range(start, end if end > start else start + pd.Timedelta(minutes=1), periods=points)
    rows = []
    for moment in grid:
        queued = (created <= moment) & ~(started <= moment) & ~(ended <= moment)
        running = (started <= moment) & ~(ended <= moment)
        done = (ended <= moment) & ~failed
        gone = (ended <= moment) & failed
        rows += [(moment, "queued", int(queued.sum())), (moment, "running", int(running.sum())),
                 (moment, "done", int(done.sum())), (moment, "failed", int(gone.sum()))]
    return pd.DataFrame(rows, columns=["time", "state", "jobs"])


def throughput(times: pd.DataFrame, buckets: int = 24) -> pd.DataFrame:
    """Jobs finished per hour in equal time buckets over the campaign (columns: start, end, state, jobs,
    per_hour): done and failed apart."""
    ended = times.dropna(subset=["finished_at"])
    ended = ended[ended["state"].isin(["done", "failed"])]
    if ended.empty:
        return pd.DataFrame(columns=["start", "end", "state", "jobs", "per_hour"])
    first, last = ended["finished_at"].min(), ended["finished_at"].max()
    span = max(last - first, pd.Timedelta(minutes=buckets))
    edges = pd.date_range(first, first + span, periods=buckets + 1)
    hours = (edges[1] - edges[0]) / pd.Timedelta(hours=1)
    index = pd.cut(ended["finished_at"], edges, include_lowest=True, labels=False)
    counts = ended.assign(bucket=index).groupby(["bucket", "state"]).size()
    rows = [(edges[b], edges[b + 1], state, int(n), n / hours) for (b, state), n in counts.items()]
    return pd.DataFrame(rows, columns=["start", "end", "state", "jobs", "per_hour"])
