"""Submit: a team uploads test predictions; the server scores them at once, within the team's quota."""
from __future__ import annotations

from datetime import datetime

import pandas as pd
import streamlit as st
from sqlalchemy import select

from db.engine import database_url, session_scope
from db.schema import Challenge, Team
from leaderboard.errors import AuthError, LeaderboardError
from leaderboard.queries import (
    board_columns,
    challenges_frame,
    metric_text,
    team_submissions,
)
from leaderboard.quota import (
    MAX_CODE_URL,
    MAX_DESCRIPTION,
    MAX_NAME,
    SubmitResult,
    link_or_none,
    quota_status,
    submit,
)
from leaderboard.site_data import spreadsheet_frame
from leaderboard.submissions import MAX_BYTES
from leaderboard.tokens import authenticate, hash_token
from workers.metric_registry import METRICS, listed_metrics
from workers.prediction_format import DETECTION_CSV_HEADER, MAX_GUESSES

FORMATS = f"""
**Classification**: CSV with the header `image_id,pred_1,...,pred_k` (1 ≤ k ≤ {MAX_GUESSES} guesses, best first), one
row per test image; a guess is a class id (0..C-1) or a class name.
**Detection**: CSV `{",".join(DETECTION_CSV_HEADER)}` (class ids 1..C or names), or a COCO results JSON list
of `{{"image_id", "category_id", "bbox": [x, y, w, h], "score"}}`.
A file that fails validation is not counted against the quota, nor is a file your team already submitted to the
challenge: its earlier result is shown again.
"""


def throttle_key() -> str:
    """The client's address, what the throttles count wrong tokens and rejected files by.

    st.context.ip_address is the connection's peer: uvicorn replaces it with X-Forwarded-For only when
    the peer is a trusted proxy (its FORWARDED_ALLOW_IPS, 127.0.0.1 by default). The header itself is
    never read here: a client writes what it likes into it, which would renew its key for free. A
    browser on the server's own machine has no address (None): those share one key, as do sessions
    without a connection (Streamlit's AppTest).
    """
    address = st.context.ip_address
    return address if isinstance(address, str) and address else "local"


def sign_in(url: str, token: str) -> str | None:
    """The team holding `token` (remembered for this session), or None after showing why not."""
    try:
        with session_scope(url) as session:
            name = authenticate(session, token, throttle_key()).name
    except LeaderboardError as exc:  # a wrong token, or too many of them (Throttled)
        st.session_state.pop("team", None)
        st.error(str(exc))
        return None
    remember(name, token)
    return name


def remember(team: str, token: str) -> None:
    # The hash, not the token: the history stays visible only while the same token is in the field.
    st.session_state["team"] = {"name": team, "token_hash": hash_token(token)}


def signed_in_team(token: str) -> str | None:
    team = st.session_state.get("team")
    if team and token and team["token_hash"] == hash_token(token):
        return team["name"]
    return None


def when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return f"{stamp:%Y-%m-%d %H:%M} UTC"


def score_text(scores: dict, key: str) -> str:
    value, ci = scores.get(key), scores.get(f"{key}_ci")
    if not isinstance(value, (int, float)) or key not in METRICS:
        return ""
    metric = METRICS[key]
    text = metric_text(metric, value)
    if isinstance(ci, list) and len(ci) == 2 and None not in ci:
        low, high = metric_text(metric, ci[0]), metric_text(metric, ci[1])
        text += f" (95% CI {low.removesuffix('%')}–{high})"
    return text


def quota_text(left: int | None, next_slot: datetime | None, quota: int, window_days: float) -> str:
    if left is None:
        return "Official team: not bound by the quota."
    text = f"{left} of {quota} submissions left in the rolling {window_days:g}-day window."
    return text + (f" The next slot frees at {when(next_slot)}." if left == 0 and next_slot else "")


def show_result(result: SubmitResult, challenge: pd.Series) -> None:
    metric = result.scores.get("metric", challenge["metric"])
    name = METRICS[metric].long_name if metric in METRICS else metric
    if result.existing:
        st.info(f"This file was already submitted as #{result.submission_id}; not charged. Its result:")
    st.success(f"Scored submission #{result.submission_id} of team {result.team} to {result.challenge}: "
               f"{name} {score_text(result.scores, metric)}")
    shown = board_columns(challenge["task"])
    columns = st.columns(len(shown) + 1)
    for column, key in zip(columns, shown):
        if isinstance(result.scores.get(key), (int, float)):
            column.metric(METRICS[key].long_name, metric_text(METRICS[key], result.scores[key]))
    columns[-1].metric("submissions left", "unlimited" if result.quota_left is None else result.quota_left)
    st.info(quota_text(result.quota_left, result.next_slot_at, int(challenge["quota"]), challenge["window_days"]))


def upload(url: str, token: str, challenge: pd.Series, file, label: str, description: str = "",
           code_url: str = "") -> None:
    if file is None:
        st.error("Choose a prediction file to upload.")
        return
    try:
        result = submit(url, token, challenge["slug"], file.getvalue(), file.name, label=label.strip(),
                        description=description, code_url=code_url, throttle_key=throttle_key())
    except LeaderboardError as exc:
        if isinstance(exc, AuthError):
            st.session_state.pop("team", None)
        st.session_state.pop("last_result", None)
        st.error(str(exc))
        return
    remember(result.team, token)
    st.session_state["last_result"] = result


def show_team(url: str, team: str, challenge: pd.Series) -> None:
    st.subheader(f"Team {team}")
    with session_scope(url) as session:
        row = session.scalar(select(Team).where(Team.name == team))
        current = session.scalar(select(Challenge).where(Challenge.slug == challenge["slug"]))
        status = quota_status(session, row, current) if row is not None and current is not None else None
    if status is not None:
        st.write(f"**{challenge['slug']}**: {status.used} used. "
                 + quota_text(status.left, status.next_slot_at, int(challenge["quota"]), challenge["window_days"]))
    history = team_submissions(url, team)
    if history.empty:
        st.caption("No submissions yet.")
        return
    # The table's toolbar exports CSV as it is: the entry names people typed are made spreadsheet-safe.
    shown = spreadsheet_frame(history, ("label", "description")).assign(code_url=history["code_url"].map(link_or_none))
    st.dataframe(shown, hide_index=True, column_config={
        "created_at": st.column_config.DatetimeColumn("submitted", format="YYYY-MM-DD HH:mm"),
        "score": st.column_config.NumberColumn(format="percent"),
        **{m.name: st.column_config.NumberColumn(m.display, format="percent" if m.percent else None)
           for m in map(METRICS.get, listed_metrics())},
        "n_rows": st.column_config.NumberColumn("rows"),
        "submission_id": st.column_config.NumberColumn("id"),
        "code_url": st.column_config.LinkColumn("code"),
    })


def main() -> None:
    url = database_url()
    st.title("Submit predictions")
    challenges = challenges_frame(url)
    if challenges.empty:
        st.info("No challenge is open for submissions yet.")
        return
    with st.expander("File formats"):
        st.markdown(FORMATS)
    titles = dict(zip(challenges["slug"], challenges["title"]))
    with st.form("submission"):
        token = st.text_input("Team token", type="password", key="token")
        slug = st.selectbox("Challenge", list(titles), key="challenge",
                            format_func=lambda s: f"{titles[s]} ({s})" if titles[s] != s else s)
        file = st.file_uploader("Prediction file", type=["csv", "json"], key="predictions",
                                max_upload_size=MAX_BYTES // 2**20)
        label = st.text_input("Entry name (optional, e.g. the model)", max_chars=MAX_NAME, key="label")
        description = st.text_area("Description (optional)", max_chars=MAX_DESCRIPTION, key="description")
        code_url = st.text_input("Code URL (optional, http:// or https://)", max_chars=MAX_CODE_URL, key="code_url")
        left, right = st.columns(2)
        send = left.form_submit_button("Submit", type="primary")
        history = right.form_submit_button("Show my submissions")
    challenge = challenges.set_index("slug").loc[slug].copy()
    challenge["slug"] = slug
    if send:
        upload(url, token, challenge, file, label, description, code_url)
    elif history:
        sign_in(url, token)
    result = st.session_state.get("last_result")
    team = signed_in_team(token)
    if result is not None and result.challenge == slug and result.team == team:
        show_result(result, challenge)
    if team is not None:
        show_team(url, team, challenge)


main()
