"""Architectures: the finished benchmark runs a page at a time; accuracy against cost; learning curves.

The filters go into the queries' WHERE clauses; the database pages the table and averages the charts' points.
"""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from db.engine import database_url
from leaderboard.paging import fetch_page, page_key, page_picker
from leaderboard.queries import (
    RUN_METRICS,
    architecture_facets,
    architecture_points,
    architectures_frame,
    histories_frame,
)
from leaderboard.site_data import (
    curve_metrics,
    run_label,
    with_run_labels,
)
from workers.metric_registry import METRICS

TABLE_COLUMNS = {
    "arch": "architecture", "family": "family", "dataset": "dataset", "suite": "suite", "seed": "seed",
    **{name: METRICS[name].display for name in RUN_METRICS}, "params": "params (M)",
    "flops": "GFLOPs", "input_size": "input", "train_ips": "train img/s", "eval_ips": "eval img/s",
    "wall_s": "wall s", "hardware": "hardware", "finished_at": "finished", "job_id": "job",
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
    table = view.assign(params=view["params"] / 1e6, flops=view["flops"] / 1e9)[list(TABLE_COLUMNS)]
    st.dataframe(table.rename(columns=TABLE_COLUMNS), hide_index=True, column_config={
        **{TABLE_COLUMNS[name]: st.column_config.NumberColumn(format="percent" if METRICS[name].percent else None)
           for name in RUN_METRICS},
        "params (M)": st.column_config.NumberColumn(format="%.2f"),
        "GFLOPs": st.column_config.NumberColumn(format="%.3f"),
        "train img/s": st.column_config.NumberColumn(format="%.0f"),
        "eval img/s": st.column_config.NumberColumn(format="%.0f"),
        "wall s": st.column_config.NumberColumn(format="%.1f"),
    })


def bubble_chart(points: pd.DataFrame, x: str, x_title: str, size: str, size_title: str) -> alt.Chart:
    """Top-1 accuracy against a cost on a log axis (costs span orders of magnitude), one bubble per architecture."""
    tooltip = [alt.Tooltip("arch", title="architecture"), "family", "dataset",
               alt.Tooltip("top1_acc", title="top-1 acc", format=".1%"),
               alt.Tooltip("params_m", title="params (M)", format=".2f"),
               alt.Tooltip("gflops", title="GFLOPs", format=".3f"), "runs"]
    base = alt.Chart(points).encode(
        x=alt.X(x, title=x_title, scale=alt.Scale(type="log")),
        y=alt.Y("top1_acc", title="top-1 accuracy", axis=alt.Axis(format="%")),
    )
    bubbles = base.mark_circle(opacity=0.7).encode(
        size=alt.Size(size, title=size_title, scale=alt.Scale(range=[60, 1500])), color=alt.Color("family"),
        tooltip=tooltip)
    names = base.mark_text(align="left", dx=8, fontSize=11).encode(text="arch")
    return bubbles + names


def show_cost_charts(points: pd.DataFrame) -> None:
    if points.empty:
        st.info("No classification runs with a measured cost in this selection.")
        return
    left, right = st.columns(2)
    left.altair_chart(bubble_chart(points, "gflops", "GFLOPs per image", "params_m", "params (M)"), width="stretch")
    right.altair_chart(bubble_chart(points, "params_m", "parameters (M)", "gflops", "GFLOPs"), width="stretch")


def show_learning_curves(url: str, view: pd.DataFrame) -> None:
    """Curves of runs picked among those of the table's page."""
    st.subheader("Learning curves")
    labels = {job: run_label(a, d, s, job) for job, a, d, s in
              zip(view["job_id"], view["arch"], view["dataset"], view["seed"])}
    chosen = st.multiselect("Runs", list(labels), default=list(labels)[:3], format_func=labels.get)
    curves = with_run_labels(histories_frame(url, chosen))
    metrics = curve_metrics(curves)
    if curves.empty or not metrics or "epoch" not in curves:
        st.info("Pick runs that logged per-epoch history.")
        return
    metric = st.selectbox("Series", metrics)
    chart = alt.Chart(curves.dropna(subset=[metric])).mark_line(point=True).encode(
        x=alt.X("epoch:Q", title="epoch"), y=alt.Y(f"{metric}:Q", title=metric),
        color=alt.Color("run:N", title="run"), tooltip=["run", "epoch", alt.Tooltip(metric, format=".4g")])
    st.altair_chart(chart, width="stretch")


def main() -> None:
    url = database_url()
    st.title("Architectures")
    st.caption("The finished benchmark runs, scored on their validation split; best top-5 error first.")
    facets = architecture_facets(url)
    if facets.empty:
        st.info("No finished runs yet. Start one with `python -m orchestrator run --suite suites/smoke.toml`.")
        return
    chosen = filters(facets)
    key = page_key("architectures", *chosen.values())
    view, page = fetch_page(key, lambda offset: architectures_frame(url, **chosen, offset=offset))
    show_table(view)
    page_picker(key, page, view)
    st.subheader("Accuracy against cost")
    st.caption("One bubble per architecture and dataset: the mean over every run of the selection, not only this page.")
    show_cost_charts(architecture_points(url, **chosen))
    show_learning_curves(url, view)


main()
