"""Where a run's errors are and when they fell, as frames and Altair charts for the site: the confusion heatmap
and the most-confused pairs (Run detail), per-class errors, validation error against training time (DAWNBench's
view, the Architectures page), and a detector's proposal recall against the number of proposals.

Pure functions of what a run row holds (`metrics`, `history`, as workers.metrics and the detection loop write
them): no query, no file, no held label. A run from before these were recorded gives an empty frame and None
for a chart, so a page shows "not recorded" rather than failing.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

HEATMAP_CLASSES = 30  # above this, the heatmap shows the classes with the most errors (1000 x 1000 cells helps no one)
LABEL_PX, DECORATION_PX = 90, 160  # a class name's room on an axis; the title, labels and legend around the cells
BY_COUNT = re.compile(r"^recall@([0-9.]+)@(\d+)$")


def _metrics(run: dict[str, Any]) -> dict[str, Any]:
    metrics = run.get("metrics")
    return metrics if isinstance(metrics, dict) else {}


def confusion_array(metrics: dict[str, Any]) -> np.ndarray | None:
    """The run's validation confusion matrix (true x predicted counts), dense or sparse as stored; None if none."""
    stored = metrics.get("confusion")
    if isinstance(stored, list) and stored and all(isinstance(row, list) for row in stored):
        matrix = np.asarray(stored, dtype=np.int64)
        return matrix if matrix.ndim == 2 and matrix.shape[0] == matrix.shape[1] else None
    if isinstance(stored, dict) and isinstance(stored.get("num_classes"), int):
        c = stored["num_classes"]
        matrix = np.zeros((c, c), dtype=np.int64)
        matrix[np.arange(c), np.arange(c)] = np.asarray(stored.get("diagonal") or [0] * c, dtype=np.int64)[:c]
        cells = np.asarray(stored.get("cells") or [], dtype=np.int64).reshape(-1, 3)
        matrix[cells[:, 0], cells[:, 1]] = cells[:, 2]
        return matrix
    return None


def class_names(metrics: dict[str, Any], count: int) -> list[str]:
    names = metrics.get("class_names")
    if isinstance(names, list) and len(names) == count:
        return [str(n) for n in names]
    return [str(i) for i in range(count)]


def per_class_frame(run: dict[str, Any]) -> pd.DataFrame:
    """One row per class: validation images, top-1 and top-5 error (fractions), worst top-1 first."""
    metrics = _metrics(run)
    per_class = metrics.get("per_class")
    columns = ["class", "images", "top1_err", "top5_err"]
    if not isinstance(per_class, dict) or not isinstance(per_class.get("images"), list):
        return pd.DataFrame(columns=columns)
    images = per_class["images"]
    frame = pd.DataFrame({"class": class_names(metrics, len(images)), "images": images,
                          "top1_err": pd.to_numeric(pd.Series(per_class.get("top1_err") or [None] * len(images)),
                                                    errors="coerce"),
                          "top5_err": pd.to_numeric(pd.Series(per_class.get("top5_err") or [None] * len(images)),
                                                    errors="coerce")})
    return frame.sort_values(["top1_err", "class"], ascending=[False, True], na_position="last").reset_index(drop=True)


def most_confused_frame(run: dict[str, Any]) -> pd.DataFrame:
    """The stored most-confused pairs: true class, predicted class, images, their share of the true class."""
    metrics = _metrics(run)
    pairs = metrics.get("most_confused")
    columns = ["true class", "predicted as", "images", "share of the class"]
    if not isinstance(pairs, list) or not pairs:
        return pd.DataFrame(columns=columns)
    matrix = confusion_array(metrics)
    count = len(matrix) if matrix is not None else 1 + max(max(p["true"], p["predicted"]) for p in pairs)
    names = class_names(metrics, count)
    return pd.DataFrame([(names[p["true"]], names[p["predicted"]], p["images"], p["share"]) for p in pairs],
                        columns=columns)


def confusion_frame(run: dict[str, Any], limit: int = HEATMAP_CLASSES) -> pd.DataFrame:
    """The heatmap's cells, long form: true, predicted, images, share of the true class (a row of the matrix
    normalised, so that a rare class's mistakes show). Above `limit` classes, only the `limit` classes with the
    most errors, in class order."""
    metrics = _metrics(run)
    matrix = confusion_array(metrics)
    if matrix is None:
        return pd.DataFrame(columns=["true", "predicted", "images", "share"])
    names = class_names(metrics, len(matrix))
    keep = np.arange(len(matrix))
    if len(matrix) > limit:
        errors = matrix.sum(axis=1) - np.diag(matrix)
        keep = np.sort(np.argsort(-errors, kind="stable")[:limit])
    sub = matrix[np.ix_(keep, keep)]
    rows = np.maximum(matrix[keep].sum(axis=1, keepdims=True), 1)
    true, predicted = np.meshgrid(keep, keep, indexing="ij")
    return pd.DataFrame({"true": [names[i] for i in true.ravel()], "predicted": [names[j] for j in predicted.ravel()],
                         "images": sub.ravel(), "share": (sub / rows).ravel()})


def confusion_heatmap(run: dict[str, Any], limit: int = HEATMAP_CLASSES) -> Any:
    """Altair heatmap of the validation confusion matrix (colour: share of the true class); None if not recorded."""
    import altair as alt

    cells = confusion_frame(run, limit)
    if cells.empty:
        return None
    order = list(dict.fromkeys(cells["true"]))
    shown = len(order)
    matrix = confusion_array(_metrics(run))
    total = 0 if matrix is None else len(matrix)
    title = "validation confusion (row-normalised)" + ("" if shown == total else
                                                        f": the {shown} of {total} classes with the most errors")
    # Streamlit sizes a chart with autosize "fit": width and height include the title, the axes' labels and the
    # legend, so the cells get the side and the decorations get their own room on top of it.
    side = max(200, min(540, 18 * shown)) + DECORATION_PX
    axis = alt.Axis(labelLimit=LABEL_PX)
    return (alt.Chart(cells).mark_rect()
            .encode(x=alt.X("predicted:N", sort=order, title="predicted", axis=axis),
                    y=alt.Y("true:N", sort=order, title="true class", axis=axis),
                    color=alt.Color("share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="share"),
                    tooltip=["true", "predicted", "images", alt.Tooltip("share:Q", format=".2%")])
            .properties(width=side, height=side, title=title))


def _time_to(run: dict[str, Any]) -> list[Any]:
    """A row's time-to-accuracy records: its `time_to` column (leaderboard.queries.time_to_runs reads only that
    JSON path) or its metrics' entry; [] when not recorded."""
    stored = run["time_to"] if "time_to" in run else _metrics(run).get("time_to")
    return stored if isinstance(stored, list) else []


def time_to_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run (rows with job_id, arch, dataset, seed, and metrics or time_to) and threshold: the first epoch,
    training seconds and elapsed seconds at which validation top-1 error reached it (NaN: never)."""
    rows = []
    for _, run in runs.iterrows():
        for entry in _time_to(dict(run)):
            if isinstance(entry, dict):
                rows.append({"job_id": run["job_id"], "arch": run["arch"], "dataset": run["dataset"],
                             "seed": run["seed"], "threshold": entry.get("threshold"), "epoch": entry.get("epoch"),
                             "train_s": entry.get("train_s"), "elapsed_s": entry.get("elapsed_s")})
    columns = ["job_id", "arch", "dataset", "seed", "threshold", "epoch", "train_s", "elapsed_s"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({c: float for c in ("threshold", "epoch", "train_s", "elapsed_s")})


def time_to_summary(times: pd.DataFrame) -> pd.DataFrame:
    """DAWNBench's figure per architecture, dataset and threshold (from time_to_frame): how many runs recorded
    it, how many reached it, and the median training seconds of those that did (NaN: none did)."""
    columns = ["arch", "dataset", "threshold", "runs", "reached", "train_s"]
    if times.empty:
        return pd.DataFrame(columns=columns)
    grouped = times.assign(hit=times["epoch"].notna()).groupby(["arch", "dataset", "threshold"], sort=True)
    summary = grouped.agg(runs=("job_id", "nunique"), reached=("hit", "sum"),
                          train_s=("train_s", lambda s: s.dropna().median()))
    return summary.reset_index()[columns].astype({"runs": int, "reached": int, "train_s": float})


def error_vs_time_chart(histories: pd.DataFrame, time: str = "train_s") -> Any:
    """Validation top-1 error (%) against training seconds (log scale), one line per run, from the per-epoch
    history (leaderboard.queries.histories_frame); None when no run recorded its times."""
    import altair as alt

    needed = {"val_top1_err", time, "job_id", "arch", "dataset", "seed"}
    if histories.empty or not needed <= set(histories.columns):
        return None
    data = histories.dropna(subset=["val_top1_err", time]).copy()
    data = data[data[time] > 0]
    if data.empty:
        return None
    data["top-1 error (%)"] = 100 * data["val_top1_err"].astype(float)
    data["run"] = [f"{a} · {d} · seed {s}" for a, d, s in zip(data["arch"], data["dataset"], data["seed"])]
    label = "training seconds" if time == "train_s" else "seconds since the start"
    return (alt.Chart(data).mark_line(point=True)
            .encode(x=alt.X(f"{time}:Q", title=f"{label} (log)", scale=alt.Scale(type="log")),
                    y=alt.Y("top-1 error (%):Q"), color=alt.Color("arch:N"), detail="run:N",
                    tooltip=["run", "epoch", alt.Tooltip(f"{time}:Q", format=".1f"),
                             alt.Tooltip("top-1 error (%):Q", format=".2f")])
            .properties(title="validation top-1 error against training time"))


def recall_by_count_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Per detection run, proposal method and budget: recall when each image keeps its first n proposals."""
    rows = []
    for _, run in runs.iterrows():
        proposals = _metrics(dict(run)).get("proposals")
        for method, stats in (proposals.items() if isinstance(proposals, dict) else []):
            for key, value in (stats.items() if isinstance(stats, dict) else []):
                if (match := BY_COUNT.match(str(key))) and isinstance(value, (int, float)):
                    rows.append({"job_id": run["job_id"], "arch": run["arch"], "method": str(method),
                                 "iou": float(match.group(1)), "proposals": int(match.group(2)),
                                 "recall": float(value)})
    return pd.DataFrame(rows, columns=["job_id", "arch", "method", "iou", "proposals", "recall"])


def recall_by_count_chart(runs: pd.DataFrame) -> Any:
    """Recall at IoU 0.5 against proposals kept per image (log), one line per run and method; None if none."""
    import altair as alt

    data = recall_by_count_frame(runs)
    if data.empty:
        return None
    data["line"] = data["method"] + " · " + data["job_id"].str[:8]
    return (alt.Chart(data).mark_line(point=True)
            .encode(x=alt.X("proposals:Q", scale=alt.Scale(type="log"), title="proposals per image (log)"),
                    y=alt.Y("recall:Q", scale=alt.Scale(domain=[0, 1]), title="recall at IoU 0.5",
                            axis=alt.Axis(format=".0%")),
                    color="method:N", detail="line:N",
                    tooltip=["method", "proposals", alt.Tooltip("recall:Q", format=".2%"), "job_id"])
            .properties(title="proposal recall against proposal count"))
