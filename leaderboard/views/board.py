"""Leaderboard: a challenge's entries ranked by its metric on the held-out test split, with 95% CIs."""
from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from db.engine import database_url, session_scope
from leaderboard import formatting as fmt
from leaderboard import phases, standings_view
from leaderboard.cache import read
from leaderboard.challenges import get_challenge
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
from workers.metric_registry import METRICS

CHART_ENTRIES = 30  # the score chart shows the page's best entries; more would not be readable
INTRO = ("Classic convolutional networks and your own models, scored as ILSVRC scored them: on a held-out test "
         "set whose labels only the server holds, with a small submission quota. New here? Read the About page.")


def display_frame(board: pd.DataFrame, task: str) -> pd.DataFrame:
    """What the table shows, every cell as text in the site's one format (leaderboard.formatting): the primary
    score first after the entry, CIs as text, a link to each run's provenance and to each entry's code;
    columns empty on every row (no description, no run behind any entry) are left out.

    The table's own toolbar downloads it as CSV and copies cells to the clipboard, unescaped: the text
    people chose (entry, team, description) is made spreadsheet-safe here, as in the Export CSV button's file.
    """
    names = spreadsheet_frame(board[["entry", "team", "description"]])
    view = pd.DataFrame({"rank": board["rank"].astype(int), "entry": names["entry"].fillna(""),
                         "team": names["team"].fillna("")})
    for key in board_columns(task):
        metric = METRICS[key]
        view[metric.display] = [fmt.metric_value(metric, v) for v in board[key]]
        view[f"{metric.display} 95% CI"] = [fmt.interval(metric, lo, hi)
                                            for lo, hi in zip(board[f"{key}_lo"], board[f"{key}_hi"])]
    view["vs leader"] = board["vs_leader"].fillna("")
    view["baseline"] = board["baseline"].astype(bool)
    view["params (M)"] = board["params"].map(fmt.millions)
    view["GFLOPs"] = board["flops"].map(fmt.giga)
    view["submitted"] = board["submitted"].map(fmt.timestamp)
    view["description"] = names["description"].map(lambda v: "" if fmt.missing(v) else str(v))
    # Relative to this page's URL, so the link also works under a server.baseUrlPath.
    view["run"] = [f"run?job={job}" if isinstance(job, str) and job else None for job in board["run_id"]]
    view["code"] = board["code_url"].map(link_or_none)
    # The entry's own columns stay (blank where a team gave nothing); a cost or metric column empty on every row goes.
    return fmt.drop_empty(view, keep=("rank", "entry", "baseline", "description", "run", "code"))


def column_config(task: str) -> dict[str, Any]:
    """Rank, entry, team and score pinned, narrow enough to fit a 390 px phone together: they stay in view as
    the rest scrolls sideways."""
    primary = METRICS[board_columns(task)[0]].display
    return {
        "rank": st.column_config.NumberColumn("rank", format="%d", width=48, pinned=True),
        "entry": st.column_config.TextColumn("entry", width=110, pinned=True),
        "team": st.column_config.TextColumn("team", width=100, pinned=True),
        primary: st.column_config.TextColumn(primary, width=78, pinned=True, alignment="right"),
        **{METRICS[k].display: st.column_config.TextColumn(alignment="right") for k in board_columns(task)[1:]},
        "baseline": st.column_config.CheckboxColumn("official baseline"),
        "params (M)": st.column_config.TextColumn(alignment="right"),
        "GFLOPs": st.column_config.TextColumn(alignment="right"),
        "run": st.column_config.LinkColumn("provenance", display_text="run detail"),
        "code": st.column_config.LinkColumn("code"),
    }


def score_chart(board: pd.DataFrame, metric_name: str) -> alt.Chart | None:
    """The primary score of the page's best entries with its 95% CI as an error bar, best at the top."""
    metric = METRICS[metric_name]
    top = board.head(CHART_ENTRIES)
    frame = pd.DataFrame({
        "entry": [f"{r}. {e}" for r, e in zip(top["rank"], top["entry"])],
        "kind": ["official baseline" if b else "team entry" for b in top["baseline"]],
        "score": top[metric_name], "low": top[f"{metric_name}_lo"].fillna(top[metric_name]),
        "high": top[f"{metric_name}_hi"].fillna(top[metric_name]),
        "shown": [fmt.metric_value(metric, v) for v in top[metric_name]],
        "ci": [fmt.interval(metric, lo, hi) for lo, hi in zip(top[f"{metric_name}_lo"], top[f"{metric_name}_hi"])],
    }).dropna(subset=["score"])
    if frame.empty:
        return None
    axis = alt.Axis(format=".0%" if metric.percent else ".2f")
    y = alt.Y("entry:N", title=None, sort=None, axis=alt.Axis(labelLimit=180))
    x_scale = alt.Scale(zero=False, nice=True)
    tooltip = [alt.Tooltip("entry:N"), alt.Tooltip("shown:N", title=metric.display), alt.Tooltip("ci:N", title="95% CI"),
               alt.Tooltip("kind:N", title="")]
    bars = alt.Chart(frame).mark_rule(strokeWidth=2).encode(
        y=y, x=alt.X("low:Q", title=f"{metric.display} (test), 95% CI", scale=x_scale, axis=axis), x2="high:Q",
        color=alt.Color("kind:N", title=None, legend=alt.Legend(orient="bottom")), tooltip=tooltip)
    points = alt.Chart(frame).mark_point(filled=True, size=60).encode(
        y=y, x=alt.X("score:Q", scale=x_scale, axis=axis), color="kind:N", tooltip=tooltip)
    # With the chart stretched to the column, Streamlit fits it: the height holds the axis and the legend too.
    return (bars + points).properties(height=32 * len(frame) + 120)


def show_validation_runs(url: str) -> None:
    """Without a challenge there is no test board yet: show the runs' validation ranking instead, a page at a time."""
    st.info("No challenge is open yet, so there is no test-set leaderboard. Create one with "
            "`python -m leaderboard admin create-challenge`. Meanwhile, the benchmark runs by validation error:")
    key = page_key("validation")
    frame, page = fetch_page(key, lambda offset: read(runs_frame, url, offset=offset))
    if frame.empty:
        st.info("No finished runs yet. Start one with `python -m orchestrator run --suite suites/smoke.toml`.")
        return
    view = frame.copy()
    view.insert(0, "rank", range((page - 1) * BOARD_PAGE + 1, (page - 1) * BOARD_PAGE + len(view) + 1))
    formats = {**{name: (lambda v, m=METRICS[name]: fmt.metric_value(m, v)) for name in RUN_METRICS},
               "params": fmt.millions, "flops": fmt.giga, "train_ips": fmt.rate, "wall_s": fmt.duration,
               "hardware": fmt.singular_text, "rank": int}
    shown = fmt.drop_empty(fmt.text_frame(view, formats), keep=("rank", "arch"))
    shown = shown.rename(columns={**RUN_COLUMNS, "params": "params (M)", "flops": "GFLOPs", "wall_s": "training time"})
    st.dataframe(shown, hide_index=True, placeholder="", height=fmt.table_height(len(shown)), column_config={
        "architecture": st.column_config.TextColumn(pinned=True),
        **{METRICS[name].display: st.column_config.TextColumn(alignment="right") for name in RUN_METRICS},
    })
    page_picker(key, page, frame)


def board_data(url: str, slug: str, best_only: bool, task: str, offset: int,
               challenge: dict[str, Any]) -> dict[str, Any]:
    """Everything the board shows of one page, built once per database state and shared by every session
    (leaderboard.cache.read): the ranked rows, the table as text, the chart's spec and both exports."""
    board = leaderboard(url, slug, best_only=best_only, task=task, offset=offset)
    if board.empty:
        return {"board": board}
    chart = score_chart(board, board_columns(task)[0])
    return {"board": board, "view": display_frame(board, task), "chart": None if chart is None else chart.to_dict(),
            "csv": board_csv(board, task), "json": board_json(board, challenge)}


def withheld_note(url: str, slug: str) -> str:
    """Why entries of a hidden phase are missing from the board, and until when ("" when nothing is withheld)."""
    with session_scope(url) as session:
        spans = phases.withheld(session, get_challenge(session, slug).id)
    return " ".join(f"Entries of a hidden phase are scored but not shown until {w.until()}." for w in spans)


def show_board(url: str, challenge: pd.Series) -> None:
    task, metric = challenge["task"], challenge["metric"]
    every = st.toggle("Every submission (not only each team's best)", value=False)
    key = page_key(f"board-{challenge['slug']}-{'every' if every else 'best'}")
    shown: dict[str, Any] = {}

    def fetch(offset: int) -> pd.DataFrame:
        shown.update(read(board_data, url, challenge["slug"], not every, task, offset, challenge.to_dict(),
                          watch=("submissions",)))  # a board changes only with a submission (baselines too)
        return shown["board"]

    board, page = fetch_page(key, fetch)
    note = read(withheld_note, url, challenge["slug"], watch=("submissions",))
    if note:
        st.caption(note)
    if board.empty:
        st.info("No submissions yet. Teams upload predictions on the Submit page.")
        return
    view = shown["view"]
    st.dataframe(view, hide_index=True, placeholder="", height=fmt.table_height(len(view)), column_config=column_config(task))
    page_picker(key, page, board, note="; the exports hold this page")
    standings_view.show(challenge["slug"], metric)  # rank intervals; after the close, the private ranking
    ties = int((board["vs_leader"] == "not significantly different").sum())
    if ties:
        st.caption(f"{ties} entr{'y is' if ties == 1 else 'ies are'} not significantly different from the leader: "
                   f"their 95% bootstrap CIs of {METRICS[metric].display} overlap the leader's.")
    if shown["chart"] is not None:
        st.vega_lite_chart(spec=shown["chart"], width="stretch")
    slug = challenge["slug"]
    left, right = st.columns(2)
    left.download_button("Export CSV", shown["csv"], file_name=f"{slug}-leaderboard.csv", mime="text/csv",
                         on_click="ignore")
    right.download_button("Export JSON", shown["json"], file_name=f"{slug}-leaderboard.json",
                          mime="application/json", on_click="ignore")


def describe(challenge: pd.Series) -> str:
    metric = METRICS.get(challenge["metric"])
    primary = metric.long_name if metric else challenge["metric"]
    better = "lower" if metric is None or metric.lower_is_better else "higher"
    quota = fmt.plural(int(challenge["quota"]), "scored submission")
    return (f"{challenge['task'].capitalize()} on the `{challenge['dataset']}` dataset, ranked by {primary} on the "
            f"held-out test split ({better} is better). Official baselines are the benchmark's own runs, one entry "
            f"per run; every other team shows its best entry. Quota: {quota} per team every "
            f"{challenge['window_days']:g} days." + ladder_sentence(challenge.get("ladder_threshold")))


def ladder_sentence(threshold: Any) -> str:
    """The Ladder in one sentence (leaderboard.ladder), "" on a plain board."""
    if threshold is None or pd.isna(threshold):
        return ""
    return (f" Scores follow the Ladder (Blum and Hardt 2015): a team's shown score changes only when a submission "
            f"beats its shown best by more than {100 * float(threshold):g} points, rounded to that step, so probing "
            f"the public part cannot climb the board; its exact scores, intervals and comparisons are not shown.")


def main() -> None:
    url = database_url()
    st.title("Leaderboard")
    st.markdown(INTRO)
    st.page_link("views/about.py", label="About: rules, metrics, reference figures, how to take part",
                 icon=":material/info:")
    challenges = read(challenges_frame, url, watch=("submissions",))
    if challenges.empty:
        show_validation_runs(url)
        return
    titles = dict(zip(challenges["slug"], challenges["title"].fillna("")))
    slug = st.selectbox("Challenge", list(titles), format_func=lambda s: titles[s] or s)
    challenge = challenges.set_index("slug").loc[slug].copy()
    challenge["slug"] = slug
    st.subheader(titles[slug] or slug)
    st.caption(describe(challenge))
    if bool(challenge.get("open_book", False)):
        st.warning("Open book: this challenge's test labels can be rebuilt from public code or data (generated "
                   "images, or a test split carved out of the training folders), so a score here shows what a method "
                   "does when nothing is hidden, not how it generalises to unseen data.", icon=":material/menu_book:")
    show_board(url, challenge)


main()
