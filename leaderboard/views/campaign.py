"""Campaign: jobs per state and per suite, the jobs a page at a time with the errors of failed ones; optionally
refreshing itself. The database counts (GROUP BY), filters, orders and pages; the page reads one page of jobs."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from db.engine import database_url
from leaderboard.paging import fetch_page, page_key, page_picker
from leaderboard.queries import campaign_counts, campaign_frame
from leaderboard.site_data import state_counts, suite_states

REFRESH_SECONDS = (5, 10, 30, 60)
JOB_COLUMNS = ["state", "suite", "arch", "dataset", "seed", "task", "attempts", "epochs_done", "node", "created_at",
               "started_at", "finished_at", "wall_s", "job_id"]
TIMES = {"created_at": "queued", "started_at": "started", "finished_at": "finished"}


def show_campaign(url: str) -> None:
    counts = campaign_counts(url)
    if counts.empty:
        st.info("No jobs yet. Start a campaign with `python -m orchestrator run --suite suites/smoke.toml`.")
        return
    per_state = state_counts(counts)
    for column, (state, n) in zip(st.columns(len(per_state)), per_state.items()):
        column.metric(state, n)
    st.subheader("Per suite")
    st.dataframe(suite_states(counts), hide_index=True)
    suites = sorted(counts["suite"].unique())
    states = list(per_state)
    left, right = st.columns(2)
    chosen_suites = left.multiselect("Suites", suites, default=suites)
    chosen_states = right.multiselect("States", states, default=states)
    chosen = {"suites": None if set(chosen_suites) == set(suites) else chosen_suites,
              "states": None if set(chosen_states) == set(states) else chosen_states}
    key = page_key("campaign", *chosen.values())
    view, page = fetch_page(key, lambda offset: campaign_frame(url, **chosen, offset=offset))
    st.subheader("Jobs")
    st.dataframe(view[JOB_COLUMNS], hide_index=True, column_config={
        **{c: st.column_config.DatetimeColumn(title, format="YYYY-MM-DD HH:mm:ss") for c, title in TIMES.items()},
        "wall_s": st.column_config.NumberColumn("wall s", format="%.1f"),
        "epochs_done": st.column_config.NumberColumn("epochs"),
    })
    page_picker(key, page, view)
    failed = view[view["state"] == "failed"]
    if not failed.empty:
        st.subheader("Failed jobs" if len(view) == view.attrs["total"] else "Failed jobs on this page")
        for _, job in failed.iterrows():
            with st.expander(f"{job['arch']} · {job['dataset']} · seed {job['seed']} · {job['job_id']}"):
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
