"""Architectures: the finished benchmark runs a page at a time; accuracy against cost; learning curves.

The filters go into the queries' WHERE clauses; the database pages the table and averages the charts' points.
"""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from db.engine import database_url
from leaderboard import error_analysis
from leaderboard import formatting as fmt
from leaderboard.cache import read
from leaderboard.paging import fetch_page, page_key, page_picker
from leaderboard.queries import (
    RUN_METRICS,
    architecture_facets,
    architecture_points,
    architectures_frame,
    histories_frame,
    time_to_runs,
)
from leaderboard.site_data import (
    curve_metrics,
    run_label,
    with_run_labels,
)
from workers.metric_registry import METRICS

TABLE_COLUMNS = {
    "arch": "architecture", **{name: METRICS[name].display for name in RUN_METRICS}, "family": "family",
    "dataset": "dataset", "suite": "suite", "seed": "seed", "params": "params (M)", "flops": "GFLOPs",
    "input_size": "input (px)", "train_ips": "train img/s", "eval_ips": "eval img/s", "wall_s": "training time",
    "hardware": "hardware", "finished_at": "finished", "job_id": "job",
}
FORMATS = {**{name: (lambda v, m=METRICS[name]: fmt.metric_value(m, v)) for name in RUN_METRICS},
           "params": fmt.millions, "flops": fmt.giga, "input_size": fmt.count, "train_ips": fmt.rate,
           "eval_ips": fmt.rate, "wall_s": fmt.duration, "hardware": fmt.singular_text, "seed": str}
ERROR = "top5_err"  # the charts' y: ILSVRC's ranking metric, as on the Leaderboard
COSTS = {  # the charts' x: column -> axis title
    "gflops": "GFLOPs per image (log scale)",
    "wall_s": "training time, s (log scale)",
}


def pick(label: str, facets: pd.DataFrame, column: str) -> list[str] | None:
    """The values of `column` to keep; None when all are kept (no filter for the query)."""
    options = sorted(str(v) for v in facets[column].dropna().unique())
    chosen = st.multiselect(label, options, default=options)
    return None if set(chosen) == set(options) else chosen


def filters(facets: pd.DataFrame) -> dict[str, list[str] | None]:
    left, middle, right = st.columns(3)
    with left:
        datasets = pick("Dataset", facets, "dataset")
    with middle:
        families = pick("Family", facets, "family")
    with right:
        suites = pick("Suite", facets, "suite")
    return {"datasets": datasets, "families": families, "suites": suites}


def show_table(view: pd.DataFrame) -> None:
    table = fmt.drop_empty(fmt.text_frame(view[list(TABLE_COLUMNS)], FORMATS), keep=("arch",))
    shown = table.assign(job_id=[f"run?job={j}" for j in view["job_id"]]).rename(columns=TABLE_COLUMNS)
    st.dataframe(shown, hide_index=True, placeholder="", height=fmt.table_height(len(shown)), column_config={
        "architecture": st.column_config.TextColumn(pinned=True),
        METRICS[ERROR].display: st.column_config.TextColumn(pinned=True, alignment="right"),
        "job": st.column_config.LinkColumn("run", display_text=r"run\?job=(.{8}).*"),
    })


def pareto(points: pd.DataFrame, x: str, y: str) -> pd.Series:
    """Whether each point is on the front: no other point is at most as costly and strictly better, or
    cheaper and at least as good. Only these are labelled, so the labels do not pile up."""
    xs, ys = points[x].to_numpy(), points[y].to_numpy()
    return pd.Series([not (((xs <= xi) & (ys < yi)) | ((xs < xi) & (ys <= yi))).any() for xi, yi in zip(xs, ys)],
                     index=points.index)


def cost_chart(points: pd.DataFrame, x: str) -> alt.Chart:
    """Top-5 error against a cost on a log axis (costs span orders of magnitude), one bubble per architecture;
    both axes fitted to the data, the best trade-offs (the Pareto front) named, every bubble in the tooltip."""
    title = COSTS[x]
    data = points.dropna(subset=[x, ERROR])
    data = data[data[x] > 0].assign(front=lambda d: pareto(d, x, ERROR))
    tooltip = [alt.Tooltip("arch", title="architecture"), "family", "dataset",
               alt.Tooltip(ERROR, title=METRICS[ERROR].display, format=".2%"),
               alt.Tooltip("top1_err", title=METRICS["top1_err"].display, format=".2%"),
               alt.Tooltip("params_m", title="params (M)", format=".2f"),
               alt.Tooltip("gflops", title="GFLOPs", format=".2f"),
               alt.Tooltip("wall_s", title="training time (s)", format=",.0f"), alt.Tooltip("runs", title="runs")]
    base = alt.Chart(data).encode(
        x=alt.X(f"{x}:Q", title=title, scale=alt.Scale(type="log", zero=False, nice=False, padding=24),
                axis=alt.Axis(format="~g", labelOverlap=True)),
        y=alt.Y(f"{ERROR}:Q", title=f"{METRICS[ERROR].display} (validation)",
                scale=alt.Scale(zero=False, nice=True, padding=16), axis=alt.Axis(format=".0%")),
    )
    bubbles = base.mark_circle(opacity=0.75, stroke="white", strokeWidth=0.5).encode(
        size=alt.Size("params_m:Q", title="params (M)", scale=alt.Scale(range=[40, 900]),
                      legend=alt.Legend(orient="bottom", direction="vertical", format="~s", tickCount=3)),
        color=alt.Color("family:N", legend=alt.Legend(orient="bottom", columns=2, labelLimit=140)),
        tooltip=tooltip)
    front = base.mark_line(strokeDash=[4, 3], color="grey", opacity=0.6).encode(order=f"{x}:Q").transform_filter(
        alt.datum.front)
    names = base.mark_text(align="left", dx=9, dy=-7, fontSize=11).encode(text="arch:N").transform_filter(
        alt.datum.front)
    return (front + bubbles + names).properties(height=360)


def show_cost_charts(points: pd.DataFrame) -> None:
    if points.empty or points[ERROR].isna().all():
        st.info("No classification runs with a measured cost in this selection.")
        return
    datasets = sorted(points["dataset"].unique())
    dataset = st.selectbox("Dataset of the charts", datasets) if len(datasets) > 1 else datasets[0]
    shown = points[points["dataset"] == dataset]
    st.caption(f"On `{dataset}`: the mean over every run of the selection, not only this page. Named: the "
               "architectures no other beats at a lower or equal cost (the dashed Pareto front); hover for the rest.")
    left, right = st.columns(2)
    left.altair_chart(cost_chart(shown, "gflops"), width="stretch")
    if shown["wall_s"].notna().any():
        right.altair_chart(cost_chart(shown, "wall_s"), width="stretch")
    else:
        right.info("These runs recorded no training time.")


def time_to_table(runs: pd.DataFrame) -> pd.DataFrame:
    """DAWNBench's figure, one row per architecture and dataset: the median training time to each validation
    top-1 error threshold over the runs that reached it ("(2 of 3 runs)" when not all did; blank: none did),
    the quickest to the hardest threshold first."""
    summary = error_analysis.time_to_summary(error_analysis.time_to_frame(runs))
    thresholds = sorted(summary["threshold"].unique(), reverse=True)  # the easiest first, as a run meets them
    rows, order = [], []
    for (arch, dataset), group in summary.groupby(["arch", "dataset"], sort=True):
        by = group.set_index("threshold")
        row = {"architecture": arch, "dataset": dataset, "runs": fmt.count(by["runs"].max())}
        for threshold in thresholds:
            reached, among = (int(by.at[threshold, c]) if threshold in by.index else 0 for c in ("reached", "runs"))
            row[f"to {fmt.percent(threshold)} {fmt.metric_name('top1_err')}"] = "" if not reached else (
                fmt.duration(by.at[threshold, "train_s"]) + ("" if reached == among else f" ({reached} of {among} runs)"))
        rows.append(row)
        seconds = [by.at[t, "train_s"] if t in by.index and by.at[t, "reached"] else None for t in thresholds[::-1]]
        order.append(tuple((True, 0.0) if fmt.missing(s) else (False, float(s)) for s in seconds))
    return pd.DataFrame([row for _, row in sorted(zip(order, rows), key=lambda pair: pair[0])])


def show_time_to_accuracy(runs: pd.DataFrame) -> None:
    table = time_to_table(runs)
    if table.empty:
        return
    st.subheader("Time to accuracy")
    st.caption("DAWNBench's view of training time: not what a whole run took (the chart above) but how soon it "
               "first reached each validation top-1 error, in training time alone (evaluation left out); the median "
               "over the selection's runs that reached it, blank where none did.")
    st.dataframe(table, hide_index=True, placeholder="", height=fmt.table_height(len(table)),
                 column_config={"architecture": st.column_config.TextColumn(pinned=True)})


def show_learning_curves(url: str, view: pd.DataFrame) -> None:
    """Curves of runs picked among those of the table's page."""
    st.subheader("Learning curves")
    labels = {job: run_label(a, d, s, job) for job, a, d, s in
              zip(view["job_id"], view["arch"], view["dataset"], view["seed"])}
    chosen = st.multiselect("Runs", list(labels), default=list(labels)[:3], format_func=labels.get)
    curves = with_run_labels(read(histories_frame, url, chosen))
    metrics = curve_metrics(curves)
    if curves.empty or not metrics or "epoch" not in curves:
        st.info("Pick runs that logged per-epoch history.")
        return
    chosen_series = st.multiselect("Series", metrics, default=metrics[:2], format_func=fmt.metric_name)
    # One chart per series: an error, a loss and a learning rate each on an axis of its own unit.
    for column, series in zip(st.columns(max(1, len(chosen_series))), chosen_series):
        column.altair_chart(curve_chart(curves, series), width="stretch")
    # The same runs against the seconds they trained: a cheap epoch and a costly one are not the same step.
    against_time = error_analysis.error_vs_time_chart(curves)
    if against_time is not None:
        st.altair_chart(against_time.properties(height=320), width="stretch")


def curve_chart(curves: pd.DataFrame, series: str) -> alt.Chart:
    metric = fmt.series_metric(series)
    percent = metric is not None and metric.percent
    return alt.Chart(curves.dropna(subset=[series])).mark_line(point=True).encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(format="d", tickMinStep=1)),
        y=alt.Y(f"{series}:Q", title=fmt.metric_name(series), scale=alt.Scale(zero=False),
                axis=alt.Axis(format=".0%" if percent else "~g")),
        color=alt.Color("run:N", title="run", legend=alt.Legend(orient="bottom", columns=1, labelLimit=400)),
        tooltip=["run", alt.Tooltip("epoch:Q", format="d"),
                 alt.Tooltip(f"{series}:Q", title=fmt.metric_name(series), format=".2%" if percent else ".4g")],
    ).properties(height=320)  # with its legend, a row per run, below


def main() -> None:
    url = database_url()
    st.title("Architectures")
    st.caption("The finished benchmark runs, scored on their own validation split during training; best top-5 error "
               "first. The Leaderboard scores the held-out test split instead, which no run saw, so its figures "
               "differ from these by sampling and by any tuning done on validation.")
    facets = read(architecture_facets, url)
    if facets.empty:
        st.info("No finished runs yet. Start one with `python -m orchestrator run --suite suites/smoke.toml`.")
        return
    chosen = filters(facets)
    key = page_key("architectures", *chosen.values())
    view, page = fetch_page(key, lambda offset: read(architectures_frame, url, **chosen, offset=offset))
    show_table(view)
    page_picker(key, page, view)
    st.subheader("Error against cost")
    show_cost_charts(read(architecture_points, url, **chosen))
    show_time_to_accuracy(read(time_to_runs, url, **chosen))
    show_learning_curves(url, view)


main()
