"""Every finished benchmark run, best top-5 error first."""
import streamlit as st

from db.engine import database_url
from leaderboard.queries import RUN_COLUMNS, runs_frame

st.title("Benchmark runs")
st.caption("Classification runs ranked by top-5 validation error (ILSVRC's primary metric); top-1 beside it.")
frame = runs_frame(database_url())
if frame.empty:
    st.info("No finished runs yet. Start one with `python -m orchestrator run --suite suites/smoke.toml`.")
else:
    suites = sorted(frame["suite"].unique())
    chosen = st.multiselect("Suites", suites, default=suites)
    view = frame[frame["suite"].isin(chosen)].copy()
    view["params"] = view["params"] / 1e6
    view["flops"] = view["flops"] / 1e9
    st.dataframe(
        view.rename(columns=RUN_COLUMNS), hide_index=True, width="stretch",
        column_config={
            "top-1 err": st.column_config.NumberColumn(format="percent"),
            "top-5 err": st.column_config.NumberColumn(format="percent"),
            "mAP@0.5": st.column_config.NumberColumn(format="percent"),
            "params": st.column_config.NumberColumn("params (M)", format="%.2f"),
            "FLOPs": st.column_config.NumberColumn("GFLOPs", format="%.3f"),
        })
