"""Run detail: everything that produced a result (ARCHITECTURE.md invariant 4). Link here with `?job=<job_id>`."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from db.engine import database_url
from leaderboard import error_analysis
from leaderboard import formatting as fmt
from leaderboard.cache import read
from leaderboard.queries import run_choices, run_record, run_submissions
from leaderboard.site_data import CURVES, run_label, spreadsheet_frame
from workers.metric_registry import METRICS, column_metrics

LOG_SHOWN_CHARS = 200_000  # the driver caps what it stores; this caps a row written some other way
# Shown under "Where the errors are" rather than in the Metrics JSON: at ImageNet's 1000 classes the matrix and
# the per-class lists are tens of thousands of numbers, which a JSON tree in the browser would crawl through.
ERROR_KEYS = ("per_class", "confusion", "most_confused", "class_names", "time_to")
LABEL_KINDS = {"devkit": "devkit", "loc_csv": "Kaggle LOC csv", "val_folders": "val class folders"}


def choose_run(choices: pd.DataFrame) -> str:
    labels = {job: f"{run_label(a, d, s, job)} · {state}" for job, a, d, s, state in
              zip(choices["job_id"], choices["arch"], choices["dataset"], choices["seed"], choices["state"])}
    requested = st.query_params.get("job")
    if requested and requested not in labels:
        st.warning(f"No run with job id {requested!r}; showing the newest run instead.")
    jobs = list(labels)
    job = st.selectbox("Run", jobs, index=jobs.index(requested) if requested in labels else 0, format_func=labels.get)
    st.query_params["job"] = job  # the address names the run shown, so it can be shared
    return job


def label_source_text(source: Any) -> str | None:
    """The metrics' label_source as one line: "devkit <path> (sha256 1a2b3c4d5e6f…)"; None when not recorded."""
    if not isinstance(source, dict) or not source.get("kind"):
        return None
    kind = str(source["kind"])
    text = " ".join(str(part) for part in (LABEL_KINDS.get(kind, kind), source.get("path")) if part)
    return f"{text} (sha256 {str(source['sha256'])[:12]}…)" if source.get("sha256") else text


def provenance_table(run: dict[str, Any]) -> pd.DataFrame:
    attempts = run["attempts"] if run["attempts"] else None  # 0 on a row the driver wrote without counting tries
    rows = [("job id", run["job_id"]), ("suite", run["suite"]), ("task", run["task"]), ("state", run["state"]),
            ("seed", run["seed"]), ("git commit", run["git_commit"]), ("hardware", fmt.singular_text(run["hardware"])),
            ("node", run["node"]), ("launcher", run["launcher"]), ("checkpoint", run["checkpoint"]),
            ("log", run["log_path"]), ("attempts", attempts), ("created", fmt.timestamp(run["created_at"])),
            ("started", fmt.timestamp(run["started_at"])), ("finished", fmt.timestamp(run["finished_at"]))]
    metrics = run["metrics"] if isinstance(run["metrics"], dict) else {}
    if (labels := label_source_text(metrics.get("label_source"))) is not None:
        rows.insert(8, ("validation labels", labels))  # after the node: what the run read, then where it wrote
    shown = [(k, fmt.text(v)) for k, v in rows]
    return pd.DataFrame({"field": [k for k, v in shown if v], "value": [v for _, v in shown if v]})


# The result fields after the metrics: (column, name, how it reads).
RESULT_FIELDS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("epochs_done", "epochs", fmt.count),
    ("params", "parameters", lambda v: fmt.millions(v) and f"{fmt.millions(v)} M"),
    ("flops", "FLOPs per image", lambda v: fmt.giga(v) and f"{fmt.giga(v)} G"),
    ("input_size", "input size", lambda v: fmt.count(v) and f"{fmt.count(v)} px"),
    ("train_ips", "training throughput", lambda v: fmt.rate(v) and f"{fmt.rate(v)} images/s"),
    ("eval_ips", "evaluation throughput", lambda v: fmt.rate(v) and f"{fmt.rate(v)} images/s"),
    ("wall_s", "training time", fmt.duration),
    ("peak_mem_mb", "peak memory", lambda v: fmt.count(v) and f"{fmt.count(v)} MB"),
)


def result_table(run: dict[str, Any]) -> pd.DataFrame:
    """The run's validation metrics (names from the registry, in their unit) and costs; empty fields left out."""
    rows = [(fmt.metric_name(k), fmt.metric_value(k, run[k])) for k in column_metrics()]
    rows += [(name, show(run[key])) for key, name, show in RESULT_FIELDS]
    rows = [(k, v) for k, v in rows if v]
    return pd.DataFrame({"field": [k for k, _ in rows], "value": [v for _, v in rows]})


def history_frames(history: list[Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-epoch records as they are (for the charts) and as the table shows them (named, formatted)."""
    records = [r for r in history or [] if isinstance(r, dict)]
    frame = pd.DataFrame(records)
    shown = fmt.text_frame(frame, {c: (lambda v, c=c: fmt.series_value(c, v)) for c in frame.columns})
    return frame, fmt.drop_empty(shown).rename(columns=fmt.metric_name)


def curve_chart(frame: pd.DataFrame, series: str) -> alt.Chart:
    """One logged series against the epoch, on its own axis in its own unit."""
    metric = fmt.series_metric(series)
    axis = alt.Axis(format=".1%" if metric is not None and metric.percent else "~g")
    return alt.Chart(frame.dropna(subset=[series])).mark_line(point=True).encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(format="d", tickMinStep=1)),
        y=alt.Y(f"{series}:Q", title=fmt.metric_name(series), axis=axis, scale=alt.Scale(zero=False)),
        tooltip=[alt.Tooltip("epoch:Q", format="d"),
                 alt.Tooltip(f"{series}:Q", title=fmt.metric_name(series),
                             format=".2%" if metric is not None and metric.percent else ".4g")],
    ).properties(height=220)


def show_history(history: list[Any]) -> None:
    frame, shown = history_frames(history)
    if frame.empty:
        st.caption("No per-epoch history recorded.")
        return
    st.dataframe(shown, hide_index=True, placeholder="", height=fmt.table_height(len(shown)))
    series = [c for c in CURVES if c in frame and frame[c].notna().any()]
    if "epoch" in frame and series:
        for column, name in zip(st.columns(len(series)), series):
            column.altair_chart(curve_chart(frame, name), width="stretch")


def per_class_table(run: dict[str, Any]) -> pd.DataFrame:
    """Each class's validation images and top-1/top-5 error, worst top-1 first, as text."""
    frame = error_analysis.per_class_frame(run)
    return pd.DataFrame({"class": frame["class"], "images": frame["images"].map(fmt.count),
                         **{fmt.metric_name(m): frame[m].map(lambda v, m=m: fmt.metric_value(m, v))
                            for m in ("top1_err", "top5_err")}})


def confused_table(run: dict[str, Any]) -> pd.DataFrame:
    """The most-confused (true, predicted) pairs, most images first, as text."""
    frame = error_analysis.most_confused_frame(run)
    return frame.assign(images=frame["images"].map(fmt.count),
                        **{"share of the class": frame["share of the class"].map(fmt.percent)})


def time_to_table(run: dict[str, Any]) -> pd.DataFrame:
    """When validation top-1 error first reached each threshold: epoch, training time, time since the start."""
    one = pd.DataFrame([{k: run[k] for k in ("job_id", "arch", "dataset", "seed", "metrics")}])
    frame = error_analysis.time_to_frame(one)
    return pd.DataFrame({f"{fmt.metric_name('top1_err')} at most": frame["threshold"].map(fmt.percent),
                         "epoch": [fmt.count(e) or "not reached" for e in frame["epoch"]],
                         "training time": frame["train_s"].map(fmt.duration),
                         "time since the start": frame["elapsed_s"].map(fmt.duration)})


def show_errors(run: dict[str, Any]) -> None:
    """Where a classifier's errors are and when they fell; nothing for a run from before these were recorded."""
    per_class, confused, times = per_class_table(run), confused_table(run), time_to_table(run)
    heatmap = error_analysis.confusion_heatmap(run)
    if per_class.empty and confused.empty and times.empty and heatmap is None:
        return
    metrics = run["metrics"] if isinstance(run["metrics"], dict) else {}
    split = fmt.PHASES.get(str(metrics.get("confusion_split")), "validation")
    st.subheader("Where the errors are")
    left, right = st.columns(2)
    with left:
        if not per_class.empty:
            st.caption(f"Per class, on the {split} split; the worst top-1 error first.")
            st.dataframe(per_class, hide_index=True, placeholder="", height=fmt.table_height(len(per_class)),
                         column_config={"class": st.column_config.TextColumn(pinned=True)})
        if not confused.empty:
            st.caption("Most confused: the true class, what it was taken for, and that share of its images.")
            st.dataframe(confused, hide_index=True, placeholder="", height=fmt.table_height(len(confused)))
    with right:
        if heatmap is not None:
            st.altair_chart(heatmap, width="stretch")
    if not times.empty:
        st.caption("Time to accuracy (DAWNBench's measure): when the validation top-1 error first reached each "
                   "threshold; training time counts the training steps alone, time since the start also "
                   "evaluation and checkpoints.")
        st.dataframe(times, hide_index=True, placeholder="", height=fmt.table_height(len(times)))


def show_proposal_counts(run: dict[str, Any]) -> None:
    """A detector's proposal recall as each image keeps more of its proposals; nothing if not recorded."""
    chart = error_analysis.recall_by_count_chart(pd.DataFrame([{k: run[k] for k in ("job_id", "arch", "metrics")}]))
    if chart is not None:
        st.subheader("Proposal recall against proposal count")
        st.altair_chart(chart, width="stretch")


def show_run(url: str, run: dict[str, Any]) -> None:
    st.header(f"{run['arch']} on {run['dataset']}")
    if run["error"]:
        st.error(run["error"])
    left, right = st.columns(2)
    with left:
        st.subheader("Provenance")
        st.table(provenance_table(run), hide_index=True)
        st.subheader("Package versions")
        st.json(run["versions"] or {})
    with right:
        st.subheader("Result")
        st.table(result_table(run), hide_index=True)
        entries = read(run_submissions, url, run["job_id"])
        if not entries.empty:
            st.subheader("Challenge entries")
            # Team names are user text, and the table's toolbar downloads CSV: escaped as every export is.
            shown = spreadsheet_frame(entries).assign(
                metric=entries["metric"].map(fmt.metric_name),
                score=[fmt.metric_value(m, v) if m in METRICS else fmt.number(v)
                       for m, v in zip(entries["metric"], entries["score"])],
                created_at=entries["created_at"].map(fmt.timestamp))
            st.dataframe(shown.rename(columns={"created_at": "submitted", "submission_id": "submission"}),
                         hide_index=True, placeholder="", height=fmt.table_height(len(shown)))
    show_errors(run)
    show_proposal_counts(run)
    st.subheader("Config")
    st.json(run["config"] or {})
    st.subheader("Metrics")
    metrics = run["metrics"] if isinstance(run["metrics"], dict) else {}
    st.json({k: v for k, v in metrics.items() if k not in ERROR_KEYS}, expanded=1)
    st.subheader("History")
    show_history(run["history"])
    st.subheader("Log")
    # Only the text the driver stored (capped, read inside its storage root): the site opens no file a row names.
    text = run["log_text"]
    if text:
        st.code(text if len(text) <= LOG_SHOWN_CHARS else "…\n" + text[-LOG_SHOWN_CHARS:], language=None)
    else:
        st.caption("No log recorded.")


def main() -> None:
    url = database_url()
    st.title("Run detail")
    choices = read(run_choices, url)
    if choices.empty:
        st.info("No runs yet.")
        return
    run = read(run_record, url, choose_run(choices))
    if run is None:  # deleted between the two queries
        st.warning("That run is gone.")
        return
    show_run(url, run)


main()
