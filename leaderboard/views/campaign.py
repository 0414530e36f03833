"""Campaign: jobs per state and per suite, jobs over time and throughput, the jobs a page at a time (each a link
to its Run detail) with the errors of failed ones; optionally refreshing itself. The database counts (GROUP BY),
filters, orders and pages; the page reads one page of jobs and four narrow columns of every job for the charts."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from db.engine import database_url
from leaderboard import formatting as fmt
from leaderboard.cache import read
from leaderboard.paging import fetch_page, page_key, page_picker
from leaderboard.queries import STATES, campaign_counts, campaign_frame, campaign_times
from leaderboard.site_data import state_counts, state_timeline, suite_states, throughput

REFRESH_SECONDS = (5, 10, 30, 60)
JOB_COLUMNS = ["job_id", "state", "suite", "arch", "dataset", "seed", "task", "attempts", "epochs_done", "node",
               "created_at", "started_at", "finished_at", "wall_s"]
TITLES = {"job_id": "job", "epochs_done": "epochs", "created_at": "queued", "started_at": "started",
          "finished_at": "finished", "wall_s": "training time"}
STATE_COLORS = alt.Scale(domain=list(STATES), range=["#9ecae9", "#f2cf5b", "#54a24b", "#e45756"])


def jobs_table(view: pd.DataFrame) -> pd.DataFrame:
    shown = fmt.text_frame(view[JOB_COLUMNS], {
        "created_at": fmt.timestamp, "started_at": fmt.timestamp, "finished_at": fmt.timestamp,
        "wall_s": fmt.duration, "seed": str,
        # 0 tries is what a row says before a worker picked it up, or when it was written without counting them.
        "attempts": lambda v: "" if fmt.missing(v) or v == 0 else fmt.count(v),
        "epochs_done": lambda v: "" if fmt.missing(v) or v == 0 else fmt.count(v),
    })
    shown["job_id"] = [f"run?job={job}" for job in view["job_id"]]  # relative: works under a baseUrlPath too
    return shown.rename(columns=TITLES)


def timeline_chart(times: pd.DataFrame) -> alt.Chart | None:
    timeline = state_timeline(times)
    if timeline.empty:
        return None
    return alt.Chart(timeline).mark_area(interpolate="step-after").encode(
        x=alt.X("time:T", title=None, axis=alt.Axis(labelOverlap=True)),
        y=alt.Y("jobs:Q", title="jobs", stack="zero", axis=alt.Axis(format="d", tickMinStep=1)),
        color=alt.Color("state:N", scale=STATE_COLORS, sort=list(STATES), legend=alt.Legend(orient="bottom")),
        order=alt.Order("order:Q"), tooltip=[alt.Tooltip("time:T", format="%Y-%m-%d %H:%M"), "state", "jobs"],
    ).transform_calculate(order=f"indexof({list(STATES)}, datum.state)").properties(
        title="Jobs by state over time", height=240)


def throughput_chart(times: pd.DataFrame) -> alt.Chart | None:
    rates = throughput(times)
    if rates.empty:
        return None
    return alt.Chart(rates).mark_bar().encode(
        x=alt.X("start:T", title=None, axis=alt.Axis(labelOverlap=True)), x2="end:T",
        y=alt.Y("per_hour:Q", title="jobs finished per hour", stack="zero", axis=alt.Axis(format="~g")),
        color=alt.Color("state:N", scale=STATE_COLORS, legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip("start:T", title="from", format="%Y-%m-%d %H:%M"),
                 alt.Tooltip("end:T", title="to", format="%Y-%m-%d %H:%M"), "state",
                 alt.Tooltip("jobs:Q", title="jobs finished"), alt.Tooltip("per_hour:Q", title="per hour", format=".1f")],
    ).properties(title="Throughput", height=240)


def show_campaign(url: str) -> None:
    counts = read(campaign_counts, url)
    if counts.empty:
        st.info("No jobs yet. Start a campaign with `python -m orchestrator run --suite suites/smoke.toml`.")
        return
    per_state = state_counts(counts)
    for column, (state, n) in zip(st.columns(len(per_state)), per_state.items()):
        column.metric(state, fmt.count(n))
    st.subheader("Per suite")
    st.dataframe(suite_states(counts), hide_index=True, placeholder="", height=fmt.table_height(len(counts["suite"].unique())),
                 column_config={"suite": st.column_config.TextColumn(pinned=True)})
    suites = sorted(counts["suite"].unique())
    states = list(per_state)
    left, right = st.columns(2)
    chosen_suites = left.multiselect("Suites", suites, default=suites)
    chosen_states = right.multiselect("States", states, default=states)
    chosen = {"suites": None if set(chosen_suites) == set(suites) else chosen_suites,
              "states": None if set(chosen_states) == set(states) else chosen_states}
    times = read(campaign_times, url, suites=chosen["suites"])
    left, right = st.columns(2)
    for column, chart in ((left, timeline_chart(times)), (right, throughput_chart(times))):
        if chart is not None:
            column.altair_chart(chart, width="stretch")
        else:
            column.caption("No finished jobs to chart yet.")
    key = page_key("campaign", *chosen.values())
    view, page = fetch_page(key, lambda offset: read(campaign_frame, url, **chosen, offset=offset))
    st.subheader("Jobs")
    shown = jobs_table(view)
    st.dataframe(shown, hide_index=True, placeholder="", height=fmt.table_height(len(shown)), column_config={
        "job": st.column_config.LinkColumn("job", display_text=r"run\?job=(.{12}).*", pinned=True),
        "state": st.column_config.TextColumn(pinned=True),
    })
    page_picker(key, page, view)
    failed = view[view["state"] == "failed"]
    if not failed.empty:
        st.subheader("Failed jobs" if len(view) == view.attrs["total"] else "Failed jobs on this page")
        for _, job in failed.iterrows():
            with st.expander(f"{job['arch']} · {job['dataset']} · seed {job['seed']} · {job['job_id']}"):
                st.page_link("views/run.py", label="Run detail", query_params={"job": job["job_id"]},
                             icon=":material/description:")
                st.code(job["error"] or "(no error recorded)", language=None)
    st.caption(f"As of {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M:%S} UTC.")


def main() -> None:
    url = database_url()
    st.title("Campaign")
    left, right = st.columns([1, 3])
    auto = left.toggle("Auto-refresh", value=False)
    seconds = right.selectbox("Every (seconds)", REFRESH_SECONDS, index=1, disabled=not auto)
    # Only this fragment reruns on the timer, so the controls above keep their state while it refreshes.
    st.fragment(show_campaign, run_every=seconds if auto else None)(url)


main()
