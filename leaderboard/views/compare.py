"""Compare: is entry A better than entry B on the same test images? (issue #15, point 4)

The paired difference in error, its 95% bootstrap interval and two p-values (paired bootstrap; exact McNemar on
the images only one of them gets right), computed by the gate (leaderboard.standings.compare), on the public part
while the challenge is open and on the private part after the close.
"""
from __future__ import annotations

import os

import streamlit as st

from db.engine import database_url
from leaderboard import gate_client
from leaderboard.cache import read
from leaderboard.errors import LeaderboardError
from leaderboard.queries import challenges_frame, leaderboard


def main() -> None:
    st.title("Compare two entries")
    url = database_url()
    gate = os.environ.get(gate_client.GATE_URL_ENV, "").strip()
    challenges = read(challenges_frame, url, watch=("submissions",))
    if challenges.empty or not gate:
        st.info("Nothing to compare: no challenge yet, or no submission gate configured "
                f"(${gate_client.GATE_URL_ENV}).")
        return
    slug = st.selectbox("Challenge", list(challenges["slug"]))
    board = read(leaderboard, url, slug, best_only=False, watch=("submissions",))
    if board.empty or len(board) < 2:
        st.info("This challenge has fewer than two entries.")
        return
    names = {int(r.submission_id): f"#{int(r.submission_id)} {r.entry} ({r.team})" for r in board.itertuples()}
    ids = list(names)
    left, right = st.columns(2)
    a = left.selectbox("Entry A", ids, index=0, format_func=lambda i: names[i])  # type: ignore[arg-type]
    b = right.selectbox("Entry B", ids, index=1, format_func=lambda i: names[i])  # type: ignore[arg-type]
    if a == b:
        st.warning("Pick two different entries.")
        return
    try:
        result = gate_client.compare(gate, slug, int(a), int(b))
    except LeaderboardError as exc:
        st.error(str(exc))
        return
    diff, (low, high) = result["difference"], result["ci"]
    verdict = ("A is better" if high < 0 else "B is better" if low > 0 else "no significant difference")
    st.metric("error(A) − error(B)", f"{diff:+.2%}", help="negative: A makes fewer errors")
    st.markdown(f"**{verdict}** at the {result['level']:.0%} level, on the {result['part']} part "
                f"({result['n_images']:,} images).\n\n"
                f"- {result['level']:.0%} CI of the difference: {low:+.2%} to {high:+.2%} (paired bootstrap, "
                f"{result['replicates']:,} resamples, seed {result['seed']})\n"
                f"- p-value, paired bootstrap: {result['p_bootstrap']:.4f}\n"
                f"- p-value, exact McNemar: {result['p_mcnemar']:.4f} (A right and B wrong on {result['a_only']:,} "
                f"images; B right and A wrong on {result['b_only']:,})")


main()
