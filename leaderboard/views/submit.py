"""Submit: a team uploads test predictions through the submission gate (gate/), which scores them at once.

The site holds a read-only database role that cannot read held labels, tokens or uploaded files: signing in
(/v1/me), the quota (/v1/challenges/SLUG/quota) and the upload itself go to the gate over HTTP, at
$CONVBENCH_GATE_URL (`convbench site` starts a local gate when none is given). The page reads the team's own
history from the database, as every page reads the boards.

An upload is sent in two steps: the form, then a confirmation that shows what it will spend (the quota left
before and after); the form is cleared after a success, so a second click cannot send the file twice.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from db.engine import database_url
from leaderboard import gate_client
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
    link_or_none,
)
from leaderboard.site_data import spreadsheet_frame
from leaderboard.submissions import MAX_BYTES
from leaderboard.tokens import hash_token
from workers.metric_registry import METRICS, listed_metrics
from workers.prediction_format import DETECTION_CSV_HEADER, MAX_GUESSES

ENTRY_FIELDS = ("predictions", "label", "description", "code_url")  # what a successful upload clears

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


def client() -> str | None:
    """The visitor's address for the gate's throttles (sent as X-Forwarded-For, which the gate believes only from
    a proxy it trusts, such as this site); None when the session has no address."""
    try:
        return str(ipaddress.ip_address(throttle_key()))
    except ValueError:
        return None


def gate_url() -> str | None:
    """The gate's base URL, from $CONVBENCH_GATE_URL; None after saying how to set it."""
    url = os.environ.get(gate_client.GATE_URL_ENV, "").strip()
    if not url:
        st.error(f"Submissions are closed on this site: no submission gate is configured "
                 f"(${gate_client.GATE_URL_ENV}; `convbench site` starts one).")
    return url or None


def show_errors(exc: LeaderboardError) -> None:
    """Every problem the gate reported, one alert each (the validator reports the first of a file's problems)."""
    for line in getattr(exc, "errors", None) or [str(exc)]:
        st.error(line)


def sign_in(gate: str, token: str) -> str | None:
    """The team holding `token`, asked of the gate (remembered for this session), or None after showing why not."""
    try:
        name = gate_client.me(gate, token, client())["team"]
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


def show_result(result: dict[str, Any], challenge: pd.Series) -> None:
    scores = result["scores"]
    metric = scores.get("metric", challenge["metric"])
    name = METRICS[metric].long_name if metric in METRICS else metric
    if result.get("existing"):
        st.info(f"This file was already submitted as #{result['submission_id']}; not charged. Its result:")
    covers = result.get("scored_on", "")
    tail = f" Scored on the {covers}" + (f"; {result['final_ranking']}." if result.get("final_ranking") else ".")
    if result.get("hidden"):  # a hidden phase: no number, no rank, until the phase ends or the challenge closes
        st.success(f"Submission #{result['submission_id']} of team {result['team']} to {result['challenge']}: "
                   f"{result['status']}.{tail if covers else ''}")
        st.info(quota_text(result["quota_left"], result.get("next_slot_at"), int(challenge["quota"]),
                           challenge["window_days"]))
        return
    st.success(f"Scored submission #{result['submission_id']} of team {result['team']} to {result['challenge']}: "
               f"{name} {score_text(scores, metric)}.{tail if covers else ''}")
    shown = board_columns(challenge["task"])
    columns = st.columns(len(shown) + 2)
    for column, key in zip(columns, shown):
        if isinstance(scores.get(key), (int, float)):
            column.metric(METRICS[key].long_name, metric_text(METRICS[key], scores[key]))
    rank = result.get("rank")
    columns[-2].metric("rank on the board", f"{rank} of {max(result.get('board_size') or 0, rank)}" if rank else "–",
                       help=None if result.get("on_board", True) else "where this score would rank: the board shows "
                                                                     "your team's better entry")
    columns[-1].metric("submissions left", "unlimited" if result["quota_left"] is None else result["quota_left"])
    st.info(quota_text(result["quota_left"], result.get("next_slot_at"), int(challenge["quota"]),
                       challenge["window_days"]))


def prepare(gate: str, token: str, challenge: pd.Series, file, label: str, description: str = "",
            code_url: str = "") -> None:
    """The form's Submit: sign in and read the quota at the gate, and hold the upload for confirmation."""
    st.session_state.pop("pending", None)
    if file is None:
        st.error("Choose a prediction file to upload.")
        return
    if sign_in(gate, token) is None:
        return
    try:
        status = gate_client.quota(gate, token, challenge["slug"], client())
    except LeaderboardError as exc:
        if isinstance(exc, AuthError):
            st.session_state.pop("team", None)
        st.error(str(exc))
        return
    data = file.getvalue()
    st.session_state["pending"] = {
        "slug": challenge["slug"], "filename": file.name, "data": data, "sha256": hashlib.sha256(data).hexdigest(),
        "label": label.strip(), "description": description, "code_url": code_url, "token_hash": hash_token(token),
        "left": status["left"], "used": status["used"], "quota": status["quota"],
        "next_slot_at": status.get("next_slot_at"),
    }


def confirm(gate: str, token: str, challenge: pd.Series) -> None:
    """The confirmation step: what the upload will spend, then Send or Cancel."""
    pending = st.session_state.get("pending")
    if not pending or pending["slug"] != challenge["slug"] or pending["token_hash"] != hash_token(token):
        st.session_state.pop("pending", None)  # the token or the challenge changed since: start again
        return
    with st.container(border=True):
        st.subheader("Confirm the upload")
        size = len(pending["data"])
        entry = f" as **{pending['label']}**" if pending["label"] else ""
        st.markdown(f"`{pending['filename']}` ({size:,} bytes, SHA-256 `{pending['sha256'][:12]}…`) to "
                    f"**{pending['slug']}**{entry}.")
        left = pending["left"]
        if left is None:
            st.markdown("Official team: not bound by the quota.")
        elif left > 0:
            st.markdown(f"This upload uses **1** of your submissions: **{left}** left now, **{left - 1}** after it "
                        f"(of {pending['quota']} in the rolling {challenge['window_days']:g}-day window). A file "
                        "that fails validation, or that your team already submitted here, costs nothing.")
        else:
            st.warning(f"You have no submission left (all {pending['quota']} used); the gate will refuse this file "
                       f"unless your team already submitted it here. The next slot frees at "
                       f"{when(pending['next_slot_at'])}.")
        send, cancel = st.columns(2)
        if cancel.button("Cancel", key="cancel_upload"):
            st.session_state.pop("pending", None)
            st.rerun()
        if send.button("Confirm and send", type="primary", key="confirm_upload"):
            upload(gate, token, pending)


def upload(gate: str, token: str, pending: dict[str, Any]) -> None:
    st.session_state.pop("pending", None)  # sent once, whatever the answer: a second click sends nothing
    try:
        result = gate_client.submit(gate, token, pending["slug"], pending["data"], pending["filename"],
                                    name=pending["label"], description=pending["description"] or "",
                                    code_url=pending["code_url"] or "", client=client())
    except LeaderboardError as exc:
        if isinstance(exc, AuthError):
            st.session_state.pop("team", None)
        st.session_state.pop("last_result", None)
        show_errors(exc)
        return
    remember(result["team"], token)
    st.session_state["last_result"] = result
    st.session_state["clear_entry"] = True  # the form's fields go on the next run, before they are drawn
    st.rerun()


def show_team(gate: str, url: str, team: str, token: str, challenge: pd.Series) -> None:
    st.subheader(f"Team {team}")
    try:
        status = gate_client.quota(gate, token, challenge["slug"], client())
    except LeaderboardError as exc:
        st.error(str(exc))
        status = None
    if status is not None:
        phase = status.get("phase")
        where = f" in phase **{phase['name']}**" if phase and phase["name"] != "open" else ""
        st.write(f"**{challenge['slug']}**{where}: {status['used']} used. "
                 + quota_text(status["left"], status["next_slot_at"], int(status["quota"]), status["window_days"]))
        if status.get("reason"):
            st.caption(status["reason"])
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


def clear_entry() -> None:
    """After a success: the file and the entry's fields start empty (the token stays, to show the history)."""
    if st.session_state.pop("clear_entry", False):
        for key in ENTRY_FIELDS[1:]:
            st.session_state.pop(key, None)
        # A file uploader keeps its file in the browser: only a new widget (a new key) starts empty.
        st.session_state["upload_round"] = st.session_state.get("upload_round", 0) + 1


def main() -> None:
    url = database_url()
    st.title("Submit predictions")
    challenges = challenges_frame(url)
    if challenges.empty:
        st.info("No challenge is open for submissions yet.")
        return
    gate = gate_url()
    if gate is None:
        return
    with st.expander("File formats"):
        st.markdown(FORMATS)
    clear_entry()
    titles = dict(zip(challenges["slug"], challenges["title"]))
    with st.form("submission"):
        token = st.text_input("Team token", type="password", key="token")
        slug = st.selectbox("Challenge", list(titles), key="challenge",
                            format_func=lambda s: f"{titles[s]} ({s})" if titles[s] != s else s)
        file = st.file_uploader("Prediction file", type=["csv", "json"],
                                key=f"{ENTRY_FIELDS[0]}_{st.session_state.get('upload_round', 0)}",
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
        st.session_state.pop("last_result", None)
        prepare(gate, token, challenge, file, label, description, code_url)
    elif history:
        sign_in(gate, token)
    confirm(gate, token, challenge)
    result = st.session_state.get("last_result")
    team = signed_in_team(token)
    if result is not None and result["challenge"] == slug and result["team"] == team:
        show_result(result, challenge)
    if team is not None:
        show_team(gate, url, team, token, challenge)


main()
