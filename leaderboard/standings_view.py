"""The board's standings panel: rank intervals, visible ties and, after the close, the private ranking of the
final selections beside the public board with each team's shift (issue #15, points 3 and 4).

The numbers come from the gate (leaderboard.standings, `GET /v1/challenges/{slug}/standings`): rank intervals
need each image's hit or miss, and only the gate's role reads labels. Asked on every render, computed once per
state and shared by every session (the gate's cache); without a gate the board says why intervals are missing.
"""
from __future__ import annotations

import os
from typing import Any

import pandas as pd
import streamlit as st

from leaderboard import formatting as fmt
from leaderboard import gate_client, standings
from leaderboard.errors import LeaderboardError
from workers.metric_registry import METRICS


def fetch(gate: str, slug: str) -> dict[str, Any]:
    # Not cached here: the gate computes once per state of the submissions and answers later asks from memory, so a
    # close or a new upload shows on the next render, never a few seconds late.
    return gate_client.standings(gate, slug)


def frame(rows: list[dict[str, Any]], metric: str, with_shift: bool) -> pd.DataFrame:
    spec = METRICS.get(metric)
    display = spec.display if spec else metric
    return pd.DataFrame(standings.table(rows, display, lambda v: fmt.metric_value(spec or metric, v), with_shift))


def _caption(answer: dict[str, Any]) -> str:
    return (f"Rank interval: the {answer['level']:.0%} range of each entry's rank over "
            f"{answer['replicates']:,} paired bootstrap resamples of the {answer['part']} part's test images (seed "
            f"{answer['seed']}). Entries sharing a rank marked \"=\" are not significantly different from their "
            f"neighbours: their order could be chance.")


def show(slug: str, metric: str) -> None:
    """The standings of `slug`: the official board (private after the close) and, after it, the public one."""
    gate = os.environ.get(gate_client.GATE_URL_ENV, "").strip()
    if not gate:
        st.caption("Rank intervals come from the submission gate, which this site has none of "
                   f"(${gate_client.GATE_URL_ENV}).")
        return
    try:
        answer = fetch(gate, slug)
    except LeaderboardError as exc:
        st.caption(f"Rank intervals are not available now: {exc}")
        return
    if not answer["board"]:
        return
    if answer["closed"]:
        st.subheader("Final standings")
        st.markdown(f"The challenge is closed. Official ranking: each team's final selections scored on the "
                    f"**{answer['part']}** part of the test set; *public→private* is how many places a team "
                    f"moved from the public board.")
        st.dataframe(frame(answer["board"], metric, True), hide_index=True, key=f"final-{slug}")
        st.caption(_caption(answer))
        with st.expander("Public board (as it stood while the challenge was open)"):
            st.dataframe(frame(answer["public"] or [], metric, False), hide_index=True, key=f"public-{slug}")
        return
    st.subheader("Rank intervals")
    st.dataframe(frame(answer["board"], metric, False), hide_index=True, key=f"intervals-{slug}")
    st.caption(_caption(answer) + " Scores on the public part; the private part is shown when the host closes "
               "the challenge.")
