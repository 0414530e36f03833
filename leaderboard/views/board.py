"""Leaderboard: a challenge's entries ranked by its metric on the held-out test split, with 95% CIs."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from db.engine import database_url
from leaderboard.paging import fetch_page, page_key, page_picker
from leaderboard.queries import (
    BOARD_PAGE,
    RUN_COLUMNS,
    RUN_METRICS,
    board_columns,
    challenges_frame,
    leaderboard,
    runs_frame,
)
from leaderboard.quota import link_or_none
from leaderboard.site_data import board_csv, board_json, spreadsheet_frame
from workers.metric_registry import METRICS, Metric


def interval(low: float, high: float, metric: Metric) -> str:
    if pd.isna(low) or pd.isna(high):
        return ""
    return f"{100 * low:.1f}–{100 * high:.1f}%" if metric.percent else f"{low:.3f}–{high:.3f}"


def number_column(metric: Metric, label: str | None = None) -> st.column_config.NumberColumn:
    """A metric's table column: a fraction in percent shown as a percentage."""
    return st.column_config.NumberColumn(label, format="percent" if metric.percent else None)


def display_frame(board: pd.DataFrame, task: str) -> pd.DataFrame:
    """What the table shows: percentages by column config, CIs as text, a link to each run's provenance and
    to each entry's code.

    The table's own toolbar downloads it as CSV and copies cells to the clipboard, unescaped: the text
    people chose (entry, team, description) is made spreadsheet-safe here, as in the Export CSV button's file.
    """
    names = spreadsheet_frame(board[["entry", "team", "description"]])
    view = pd.DataFrame({"rank": board["rank"], "entry": names["entry"], "team": names["team"],
                         "description": names["description"], "baseline": board["baseline"]})
    for key in board_columns(task):
        label = METRICS[key].display
        view[label] = board[key]
        if board[f"{key}_lo"].notna().any():
            view[f"{label} 95% CI"] = [interval(lo, hi, METRICS[key])
                                       for lo, hi in zip(board[f"{key}_lo"], board[f"{key}_hi"])]
    view["vs leader"] = board["vs_leader"]
    view["params (M)"] = board["params"] / 1e6
    view["GFLOPs"] = board["flops"] / 1e9
    view["submitted"] = board["submitted"]
    # Relative to this page's URL, so the link also works under a server.baseUrlPath.
    view["run"] = [f"run?job={job}" if isinstance(job, str) and job else None for job in board["run_id"]]
    view["code"] = board["code_url"].map(link_or_none)
    return view


def show_validation_runs(url: str) -> None:
    """Without a challenge there is no test board yet: show the runs' validation ranking instead, a page at a time."""
    st.info("No challenge is open yet, so there is no test-set leaderboard. Create one with "
            "`python -m leaderboard admin create-challenge`. Meanwhile, the benchmark runs by validation error:")
    key = page_key("validation")
    frame, page = fetch_page(key, lambda offset: runs_frame(url, offset=offset))
    if frame.empty:
        st.info("No finished runs yet. Start one with `python -m orchestrator run --suite suites/smoke.toml`.")
        return
    view = frame.assign(params=frame["params"] / 1e6, flops=frame["flops"] / 1e9)
    view.insert(0, "rank", range((page - 1) * BOARD_PAGE + 1, (page - 1) * BOARD_PAGE + len(view) + 1))
    st.dataframe(view.rename(columns=RUN_COLUMNS), hide_index=True, column_config={
        **{RUN_COLUMNS[name]: number_column(METRICS[name]) for name in RUN_METRICS},
        "params": st.column_config.NumberColumn("params (M)", format="%.2f"),
        "FLOPs": st.column_config.NumberColumn("GFLOPs", format="%.3f"),
    })
    page_picker(key, page, frame)


def show_board(url: str, challenge: pd.Series) -> None:
    task, metric = challenge["task"], challenge["metric"]
    every = st.toggle("Every submission (not only each team's best)", value=False)
    key = page_key(f"board-{challenge['slug']}-{'every' if every else 'best'}")
    board, page = fetch_page(key, lambda offset: leaderboard(url, challenge["slug"], best_only=not every, task=task,
                                                             offset=offset))
    if board.empty:
        st.info("No submissions yet. Teams upload predictions on the Submit page.")
        return
    st.dataframe(display_frame(board, task), hide_index=True, column_config={
        **{METRICS[k].display: number_column(METRICS[k]) for k in board_columns(task)},
        "baseline": st.column_config.CheckboxColumn("official baseline"),
        "params (M)": st.column_config.NumberColumn(format="%.2f"),
        "GFLOPs": st.column_config.NumberColumn(format="%.3f"),
        "submitted": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "run": st.column_config.LinkColumn("provenance", display_text="run detail"),
        "code": st.column_config.LinkColumn("code"),
    })
    page_picker(key, page, board, note="; the exports hold this page")
    ties = int((board["vs_leader"] == "not significantly different").sum())
    if ties:
        st.caption(f"{ties} entr{'y is' if ties == 1 else 'ies are'} not significantly different from the leader: "
                   f"their 95% bootstrap CIs of {METRICS[metric].display} overlap the leader's.")
    slug = challenge["slug"]
    left, right = st.columns(2)
    left.download_button("Export CSV", board_csv(board, task), file_name=f"{slug}-leaderboard.csv", mime="text/csv",
                         on_click="ignore")
    right.download_button("Export JSON", board_json(board, challenge.to_dict()), file_name=f"{slug}-leaderboard.json",
                          mime="application/json", on_click="ignore")


def main() -> None:
    url = database_url()
    st.title("Leaderboard")
    challenges = challenges_frame(url)
    if challenges.empty:
        show_validation_runs(url)
        return
    titles = dict(zip(challenges["slug"], challenges["title"]))
    slug = st.selectbox("Challenge", list(titles), format_func=lambda s: f"{titles[s]} ({s})" if titles[s] != s else s)
    challenge = challenges.set_index("slug").loc[slug].copy()
    challenge["slug"] = slug
    primary = METRICS[challenge["metric"]].display if challenge["metric"] in METRICS else challenge["metric"]
    st.caption(f"{challenge['task'].capitalize()} on `{challenge['dataset']}`, ranked by {primary} on the held-out "
               f"test split. Official baselines are the benchmark's own runs, one entry per run; every other team "
               f"shows its best entry. Quota: {challenge['quota']} per {challenge['window_days']:g} days.")
    show_board(url, challenge)


main()
