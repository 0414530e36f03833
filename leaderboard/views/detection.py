"""Detection: R-CNN runs' mAP overall and per class, and how good their region proposals were."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from db.engine import database_url
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
        "detector": [m.get("detector", "") if isinstance(m, dict) else "" for m in runs["metrics"]],
        **{m.display: runs[m.name] for m in SHOWN}, "suite": runs["suite"],
        "params (M)": runs["params"] / 1e6, "GFLOPs": runs["flops"] / 1e9, "job": runs["job_id"],
    })
    st.dataframe(table, hide_index=True, column_config={
        **{m.display: st.column_config.NumberColumn(format="percent" if m.percent else None)
           for m in SHOWN},
        "params (M)": st.column_config.NumberColumn(format="%.2f"),
        "GFLOPs": st.column_config.NumberColumn(format="%.2f"),
    })


def show_per_class(runs: pd.DataFrame) -> None:
    st.subheader("AP per class")
    ap = per_class_ap(runs)
    if ap.empty:
        st.info("These runs recorded no per-class AP.")
        return
    st.dataframe(ap.pivot_table(index="class", columns="run", values="ap50", aggfunc="first").reset_index(),
                 hide_index=True)
    chart = alt.Chart(ap.dropna(subset=["ap50"])).mark_bar().encode(
        x=alt.X("class:N", title="class"), xOffset="run:N", y=alt.Y("ap50:Q", title="AP@0.5", axis=alt.Axis(format="%")),
        color=alt.Color("run:N"), tooltip=["run", "class", alt.Tooltip("ap50", format=".3f"),
                                           alt.Tooltip("ap_coco", format=".3f")])
    st.altair_chart(chart, width="stretch")


def show_proposals(runs: pd.DataFrame) -> None:
    st.subheader("Region proposals")
    recall = proposal_recall_frame(runs)
    if recall.empty:
        st.info("These runs recorded no proposal statistics.")
        return
    st.dataframe(recall.drop(columns=["job_id"]), hide_index=True, column_config={
        "recall@0.5": st.column_config.NumberColumn(format="percent"),
        "recall@0.7": st.column_config.NumberColumn(format="percent"),
        "per_image": st.column_config.NumberColumn("boxes / image", format="%.0f"),
        "seconds_per_image": st.column_config.NumberColumn("s / image", format="%.3f"),
        "map50": st.column_config.NumberColumn(f"{METRICS['map50'].display} with these", format="percent"),
    })
    long = recall.melt(id_vars=["run", "method"], value_vars=["recall@0.5", "recall@0.7"], var_name="IoU",
                       value_name="recall").dropna(subset=["recall"])
    if not long.empty:
        chart = alt.Chart(long).mark_bar().encode(
            x=alt.X("method:N", title="proposal method"), xOffset="IoU:N",
            y=alt.Y("recall:Q", axis=alt.Axis(format="%")), color="IoU:N", column=alt.Column("run:N", title=None),
            tooltip=["run", "method", "IoU", alt.Tooltip("recall", format=".3f")])
        st.altair_chart(chart)


def main() -> None:
    st.title("Detection")
    st.caption("R-CNN runs on their validation split: VOC mAP@0.5 and COCO mAP@[.5:.95], best first.")
    runs = detection_frame(database_url())
    if runs.empty:
        st.info("No finished detection runs yet. Run a detection suite, e.g. `suites/voc.toml`.")
        return
    show_overall(runs)
    show_per_class(runs)
    show_proposals(runs)


main()
