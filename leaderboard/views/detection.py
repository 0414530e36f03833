"""Detection: R-CNN runs' mAP overall and per class, and how good their region proposals were."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from db.engine import database_url
from leaderboard import error_analysis
from leaderboard import formatting as fmt
from leaderboard.cache import read
from leaderboard.queries import detection_frame
from leaderboard.site_data import (
    per_class_ap,
    proposal_recall_frame,
    run_label,
)
from workers.metric_registry import METRICS, column_metrics

SHOWN = [METRICS[name] for name in column_metrics("detection")]  # the runs columns: mAP@0.5, mAP@[.5:.95]


def show_overall(runs: pd.DataFrame) -> None:
    table = pd.DataFrame({
        "run": [run_label(a, d, s, j) for a, d, s, j in zip(runs["arch"], runs["dataset"], runs["seed"], runs["job_id"])],
        **{m.display: [fmt.metric_value(m, v) for v in runs[m.name]] for m in SHOWN},
        "detector": [str(m.get("detector", "")) if isinstance(m, dict) else "" for m in runs["metrics"]],
        "suite": runs["suite"], "params (M)": runs["params"].map(fmt.millions), "GFLOPs": runs["flops"].map(fmt.giga),
        "job": [f"run?job={j}" for j in runs["job_id"]],
    })
    st.dataframe(fmt.drop_empty(table, keep=("run",)), hide_index=True, placeholder="", height=fmt.table_height(len(table)),
                 column_config={
                     "run": st.column_config.TextColumn(pinned=True),
                     SHOWN[0].display: st.column_config.TextColumn(pinned=True, alignment="right"),
                     "job": st.column_config.LinkColumn("run detail", display_text="run detail"),
                 })


def show_per_class(runs: pd.DataFrame) -> None:
    st.subheader("AP per class")
    ap = per_class_ap(runs)
    if ap.empty:
        st.info("These runs recorded no per-class AP.")
        return
    # The table in percent, as the chart beside it.
    table = ap.pivot_table(index="class", columns="run", values="ap50", aggfunc="first")
    shown = table.map(fmt.percent).reset_index().rename_axis(columns=None)
    st.dataframe(shown, hide_index=True, placeholder="", height=fmt.table_height(len(shown)),
                 column_config={"class": st.column_config.TextColumn(pinned=True)})
    # Horizontal bars: class names read left to right however many classes and runs there are.
    data = ap.dropna(subset=["ap50"]).assign(shown=lambda d: d["ap50"].map(fmt.percent))
    chart = alt.Chart(data).mark_bar().encode(
        y=alt.Y("class:N", title=None, axis=alt.Axis(labelAngle=0, labelLimit=200)), yOffset="run:N",
        x=alt.X("ap50:Q", title="AP@0.5", axis=alt.Axis(format=".0%"), scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("run:N", legend=alt.Legend(orient="bottom", columns=1, labelLimit=400)),
        tooltip=["run", "class", alt.Tooltip("shown:N", title="AP@0.5"),
                 alt.Tooltip("ap_coco:Q", title="AP@[.5:.95]", format=".2%")],
    ).properties(height=28 * len(data) + 110)  # the legend below counts in the height
    st.altair_chart(chart, width="stretch")


def show_proposals(runs: pd.DataFrame) -> None:
    st.subheader("Region proposals")
    recall = proposal_recall_frame(runs)
    if recall.empty:
        st.info("These runs recorded no proposal statistics.")
        return
    shown = pd.DataFrame({
        "run": recall["run"], "method": recall["method"].str.replace("_", " "),
        "recall@0.5": recall["recall@0.5"].map(fmt.percent), "recall@0.7": recall["recall@0.7"].map(fmt.percent),
        "boxes / image": recall["per_image"].map(fmt.count),
        "ms / image": recall["seconds_per_image"].map(lambda v: fmt.count(1000 * v) if not fmt.missing(v) else ""),
        f"{METRICS['map50'].display} with these": recall["map50"].map(fmt.percent),
    })
    st.dataframe(fmt.drop_empty(shown), hide_index=True, placeholder="", height=fmt.table_height(len(shown)))
    long = recall.melt(id_vars=["run", "method"], value_vars=["recall@0.5", "recall@0.7"], var_name="IoU",
                       value_name="recall").dropna(subset=["recall"])
    if not long.empty:
        chart = alt.Chart(long).mark_bar().encode(
            y=alt.Y("method:N", title=None, axis=alt.Axis(labelAngle=0)), yOffset="IoU:N",
            x=alt.X("recall:Q", axis=alt.Axis(format=".0%"), scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("IoU:N", title="recall at IoU", legend=alt.Legend(orient="bottom")),
            row=alt.Row("run:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left", labelLimit=400)),
            tooltip=["run", "method", "IoU", alt.Tooltip("recall", format=".2%")])
        st.altair_chart(chart, width="stretch")
    by_count = error_analysis.recall_by_count_chart(runs)
    if by_count is not None:
        st.caption("Recall at IoU 0.5 when each image keeps only its first n proposals (in the method's own order): "
                   "how many proposals a detector needs before the boxes it could find are there to be found.")
        st.altair_chart(by_count.properties(height=320), width="stretch")


def main() -> None:
    st.title("Detection")
    st.caption("R-CNN runs on their validation split: VOC mAP@0.5 and COCO mAP@[.5:.95], best first.")
    runs = read(detection_frame, database_url())
    if runs.empty:
        st.info("No finished detection runs yet. Run a detection suite, e.g. `suites/voc.toml`.")
        return
    show_overall(runs)
    show_per_class(runs)
    show_proposals(runs)


main()
