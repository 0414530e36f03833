"""Submitting: validate, score, and insert under the team's rolling-window quota (ARCHITECTURE.md invariant 2).

The count and the insert happen in one transaction that holds a lock: the team's row
(SELECT ... FOR UPDATE) on PostgreSQL, the database's write lock (BEGIN IMMEDIATE) on SQLite.
So concurrent uploads from one team are serialised and cannot exceed the quota. A file that
fails validation never reaches that transaction and costs no quota; it counts against a separate,
generous throttle (leaderboard.throttle.REJECTED_UPLOADS) per team and per client address.

A file is charged once: a team that sends a file again (same SHA-256) to the same challenge gets its
earlier result back (SubmitResult.existing) and is charged nothing, checked before validation (to save the
work) and again under the lock (two identical uploads at once make one row). An official team's entries are
its runs, one per run_id (two runs may well predict alike), so it is exempt; the quota does not bind it anyway.

An entry carries a name (`label`), a description and a code URL, shown on the board and in its exports;
`entry_fields` refuses a bad one (a code URL that is not http(s), a description too long) before anything
else runs, so it costs nothing.

Time is the database server's (leaderboard.throttle.server_now), read inside the locked transaction:
a submitting process whose clock is wrong can neither stamp its rows into the past nor move the
window. `now=` overrides it only for tests and an operator's backfill.
"""
from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, undefer

from db.engine import database_url, make_sessionmaker
from db.schema import Challenge, PrivateScore, Run, Submission, Team
from leaderboard import audit, ladder, phases, scoring, throttle
from leaderboard.challenges import get_challenge
from leaderboard.errors import AuthError, ChallengeError, QuotaExceeded, ScoringError, ValidationError
from leaderboard.submissions import MAX_BYTES, Parsed, validate
from leaderboard.tokens import authenticate

MAX_NAME = 128  # Submission.label's length
MAX_DESCRIPTION = 2000
MAX_CODE_URL = 512  # Submission.code_url's length
URL_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Entry:
    """What a team says about an upload: its name, description and code URL ("" and None when not given)."""

    name: str = ""
    description: str | None = None
    code_url: str | None = None


def _control(text: str, allowed: str = "") -> bool:
    """Whether `text` holds a control character other than those `allowed` (PostgreSQL takes no NUL in text)."""
    return any(unicodedata.category(c) == "Cc" and c not in allowed for c in text)


def check_code_url(url: str) -> str:
    """`url` if it is a plain http(s) address with a host, else a ValidationError that says what is wrong.

    Only http(s): the board shows it as a link, and `javascript:` or `data:` there would run in a visitor's
    browser. No user name or password either: `https://github.com@evil.example/` is not a GitHub address.
    """
    if len(url) > MAX_CODE_URL:
        raise ValidationError(f"code URL: {len(url)} characters, at most {MAX_CODE_URL}")
    if any(c.isspace() for c in url) or _control(url):
        raise ValidationError("code URL: no spaces or control characters (write a space as %20)")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host, parts = None, None
    if parts is None or parts.scheme.lower() not in URL_SCHEMES:
        raise ValidationError("code URL: only http:// and https:// addresses are accepted, "
                              "e.g. https://github.com/team/model")
    if not host:
        raise ValidationError("code URL: no host name, e.g. https://github.com/team/model")
    if "@" in parts.netloc:
        raise ValidationError("code URL: no user name or password before the host")
    return url


def link_or_none(url: object) -> str | None:
    """A stored code URL fit to be a link on a page (check_code_url passes it), else None: submit() stores no
    other, and a row written some other way must not put a `javascript:` link on the site."""
    if not isinstance(url, str) or not url:
        return None
    try:
        return check_code_url(url)
    except ValidationError:
        return None


def entry_fields(name: str = "", description: str | None = "", code_url: str | None = "") -> Entry:
    """An entry's fields, stripped and checked: a ValidationError for a bad one. A name longer than
    MAX_NAME is cut to it (as it always was); a description longer than MAX_DESCRIPTION is refused."""
    name = (name or "").strip()[:MAX_NAME]
    if _control(name):
        raise ValidationError("entry name: no control characters")
    text = (description or "").strip()
    if len(text) > MAX_DESCRIPTION:
        raise ValidationError(f"description: {len(text)} characters, at most {MAX_DESCRIPTION}")
    if _control(text, "\t\n\r"):
        raise ValidationError("description: no control characters other than tabs and line breaks")
    url = (code_url or "").strip()
    return Entry(name, text or None, check_code_url(url) if url else None)


@dataclass(frozen=True)
class QuotaStatus:
    used: int  # scored submissions in the current window
    left: int | None  # None: an official team, not bound by the quota
    next_slot_at: datetime | None  # when the oldest counted submission leaves the window; None while one is free
    reason: str = ""  # when none is left: which rule of which phase binds, and until when (leaderboard.phases)


@dataclass(frozen=True)
class SubmitResult:
    submission_id: int
    challenge: str
    team: str
    primary_score: float  # lower is better; scoring.metric_value gives the metric's own value
    scores: dict[str, Any]
    quota_left: int | None  # None: official team, unbound
    next_slot_at: datetime | None  # None while a slot is free
    existing: bool = False  # True: this run, or this team's same file, was submitted before; its earlier row is returned


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every time here is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _now(session: Session, now: datetime | None) -> datetime:
    """`now` when a test or a backfill fixes it, else the database server's clock (never this process's)."""
    return _aware(now) if now is not None else throttle.server_now(session.connection())


def quota_status(session: Session, team: Team, challenge: Challenge, now: datetime | None = None) -> QuotaStatus:
    """How much of its quota `team` has used on `challenge` in the phase open at `now` (default: the database
    server's time): every rule of the phase (per rolling window, per UTC day, in total; leaderboard.phases); none
    left outside an open phase."""
    now = _now(session, now)
    status = phases.status(session, team, challenge, now)
    return QuotaStatus(status.used, status.left, status.next_slot_at, status.reason)


def check_upload(session: Session, challenge: Challenge, data: bytes, filename: str,
                 max_bytes: int = MAX_BYTES) -> Parsed:
    """Validate a file against a stored challenge without submitting it (e.g. to preview an upload)."""
    return validate(challenge.task, data, filename, scoring.public_image_ids(session, challenge),
                    list(challenge.class_names), max_bytes)


def _validated(session: Session, team: Team, challenge: Challenge, data: bytes, filename: str, max_bytes: int,
               client: str | None) -> Parsed:
    """check_upload, charged to the team's and the client's rejected-upload throttle when it fails."""
    if team.official:  # the benchmark's own runs: bound by neither the quota nor this
        return check_upload(session, challenge, data, filename, max_bytes)
    keys = [f"team:{team.id}"] + ([throttle.client_key(client)] if client else [])
    with throttle.charged(session.get_bind(), throttle.REJECTED_UPLOADS, keys, failure=ValidationError):
        return check_upload(session, challenge, data, filename, max_bytes)


def _quota_error(challenge: Challenge, status: QuotaStatus) -> QuotaExceeded:
    at = status.next_slot_at
    if status.reason:
        return QuotaExceeded(status.reason, at)
    if at is None:  # a quota of zero, set by hand in the database: the challenge is closed
        return QuotaExceeded(f"challenge {challenge.slug!r} takes no submissions now", None)
    return QuotaExceeded(f"quota reached: {status.used} of {challenge.quota} submissions to {challenge.slug!r} in the "
                         f"last {challenge.window_days:g} days; the next slot frees at {at:%Y-%m-%d %H:%M:%S} UTC", at)


def _team(session: Session, token_or_team: str | Team, throttle_key: str | None) -> Team:
    if isinstance(token_or_team, Team):
        team = session.get(Team, token_or_team.id)
        if team is None or team.revoked:
            raise AuthError()
        return team
    return authenticate(session, token_or_team, throttle_key)


def _result(session: Session, row: Submission, team: Team, challenge: Challenge, now: datetime | None,
            existing: bool) -> SubmitResult:
    status = quota_status(session, team, challenge, now)
    return SubmitResult(row.id, challenge.slug, team.name, row.primary_score, dict(row.scores), status.left,
                        status.next_slot_at, existing)


def _existing_run(session: Session, challenge: Challenge, run_id: str) -> Submission | None:
    return session.scalar(select(Submission).where(Submission.challenge_id == challenge.id,
                                                   Submission.run_id == run_id))


def _existing_file(session: Session, challenge: Challenge, team: Team, sha256: str) -> Submission | None:
    """The team's earliest submission of this file to this challenge (ix_submissions_file); None for an official
    team, whose entries are its runs."""
    if team.official:
        return None
    return session.scalar(select(Submission).where(Submission.challenge_id == challenge.id,
                                                   Submission.team_id == team.id, Submission.file_sha256 == sha256)
                          .order_by(Submission.id).limit(1))


def _lock_team(session: Session, team_id: int) -> Team:
    """Start the quota transaction holding the lock; returns the team as it is now."""
    if session.get_bind().dialect.name == "sqlite":
        # Must be the transaction's first statement: the begin event in db.engine reads this option.
        session.connection(execution_options={"sqlite_begin": "BEGIN IMMEDIATE"})
        team = session.get(Team, team_id)
    else:
        team = session.scalar(select(Team).where(Team.id == team_id).with_for_update())
    if team is None or team.revoked:
        raise AuthError()
    return team


def _shown_score(session: Session, challenge: Challenge, team: Team, primary_score: float) -> float | None:
    """Under the Ladder, the public score the team is shown for a new upload scoring `primary_score`; None on a plain
    board. Read under the quota's lock, which serialises the team's uploads: the previous shown best (the lowest, as
    the Ladder's shown scores only fall) is the one the team saw last, whatever else is uploading at once."""
    if challenge.ladder_threshold is None:
        return None
    best = session.scalar(select(func.min(Submission.shown_score)).where(
        Submission.challenge_id == challenge.id, Submission.team_id == team.id))
    return ladder.ladder_score(best, primary_score, challenge.ladder_threshold)


def _refused(session: Session, team: Team, challenge: Challenge, sha256: str, status: QuotaStatus,
             apart: bool) -> QuotaExceeded:
    """The quota's refusal, recorded in the audit trail: in a transaction of its own (`apart`), or in the session's
    locked one, committed (the refusal's row is all that transaction writes)."""
    error = _quota_error(challenge, status)
    detail = {"reason": str(error), "file_sha256": sha256, "used": status.used, "quota": challenge.quota}
    if apart:
        actor, challenge_id, bind = team.name, challenge.id, session.get_bind()
        session.close()  # its connection back to the pool first: many refusals at once must not need two each
        audit.record_apart(bind, "submission.quota_refused", actor, detail, challenge_id)
    else:
        audit.record(session, "submission.quota_refused", team.name, detail, challenge.id)
        session.commit()
    return error


def submit(url: str | None, token_or_team: str | Team, challenge_slug: str, data: bytes, filename: str,
           label: str = "", run_id: str | None = None, *, description: str | None = "", code_url: str | None = "",
           now: datetime | None = None, throttle_key: str | None = None, max_bytes: int = MAX_BYTES) -> SubmitResult:
    """Validate, score and record one prediction file; raises ValidationError, AuthError, QuotaExceeded, ...

    `token_or_team`: a team's token, or a Team row (the orchestrator's official team). `label` (the entry's
    name), `description` and `code_url` are shown on the board (entry_fields checks them). A `run_id`
    already submitted to this challenge, or a file this (non-official) team already submitted to it, returns
    the earlier submission (`existing=True`, nothing charged) instead of a second row.
    `now` fixes the clock (tests, an operator's backfill; otherwise the database server's clock).
    `throttle_key` names the client (an address, "cli:user@host"): wrong tokens and rejected files are
    throttled per client as well as per token and per team (Throttled).
    """
    entry = entry_fields(label, description, code_url)  # before anything else: a bad field costs nothing
    sha256 = hashlib.sha256(data).hexdigest()
    maker = make_sessionmaker(database_url(url))
    with maker() as session:
        team = _team(session, token_or_team, throttle_key)
        if run_id is not None and not team.official:
            # A run is the benchmark's own: a team naming one would put its file on the board as that run's.
            raise ValidationError("run_id: only an official baseline team's submission names a benchmark run")
        challenge = get_challenge(session, challenge_slug)
        if challenge.closed_at is not None:
            raise ChallengeError(f"challenge {challenge_slug!r} is closed since {challenge.closed_at:%Y-%m-%d %H:%M} "
                                 f"UTC: it takes no more submissions")
        if run_id is not None:
            earlier = _existing_run(session, challenge, run_id)
            if earlier is not None:
                return _result(session, earlier, team, challenge, now, existing=True)
            if session.get(Run, run_id) is None:
                raise ChallengeError(f"no run {run_id!r} in the runs table")
        # Before the quota and validation: a file sent again costs neither a slot nor the work of scoring it.
        earlier = _existing_file(session, challenge, team, sha256)
        if earlier is not None:
            return _result(session, earlier, team, challenge, now, existing=True)
        # A cheap early refusal; the check that counts is the locked one below.
        status = quota_status(session, team, challenge, now)
        if status.left == 0:
            raise _refused(session, team, challenge, sha256, status, apart=True)
        try:
            parsed = _validated(session, team, challenge, data, filename, max_bytes, throttle_key)
            # Scored before the lock so that a slow scorer (COCO mAP) does not hold it; under the lock
            # only the count and the insert run, and a refused file's scores are dropped unseen.
            scored = scoring.score_submission(session, challenge, parsed)
        except (ValidationError, ScoringError) as exc:
            # Recorded apart, holding no lock of the quota's: the refusal still costs no slot. The session's
            # connection goes back to the pool first, so a burst of refusals needs one connection each, not two.
            actor, challenge_id, bind = team.name, challenge.id, session.get_bind()
            session.close()
            audit.record_apart(bind, "submission.rejected", actor,
                               {"reason": str(exc), "file_sha256": sha256, "bytes": len(data)}, challenge_id)
            raise

    with maker() as session:
        team = _lock_team(session, team.id)
        # Under the lock, which serialises the team's uploads: of two identical ones, the second finds the first.
        earlier = _existing_file(session, challenge, team, sha256)
        if earlier is not None:
            return _result(session, earlier, team, challenge, now, existing=True)
        now = _now(session, now)  # read under the lock: the time this row is counted at
        status = quota_status(session, team, challenge, now)
        if status.left == 0:
            raise _refused(session, team, challenge, sha256, status, apart=False)
        row = Submission(team_id=team.id, challenge_id=challenge.id, run_id=run_id, label=entry.name,
                         description=entry.description, code_url=entry.code_url,
                         file_sha256=sha256, file_data=bytes(data),
                         n_rows=parsed.n_rows, primary_score=scored.primary_score, scores=scored.scores,
                         created_at=now, shown_score=_shown_score(session, challenge, team, scored.primary_score))
        session.add(row)
        try:
            session.flush()
            if scored.private is not None:  # hidden from every answer until close (leaderboard.parts)
                session.add(PrivateScore(submission_id=row.id, primary_score=scored.private.primary_score,
                                         scores=scored.private.scores))
                session.flush()
            audit.record(session, "submission.accepted", team.name,
                         {"file_sha256": sha256, "n_rows": parsed.n_rows, "metric": challenge.metric,
                          "primary_score": scored.primary_score, "run_id": run_id}, challenge.id, f"submission {row.id}")
            # Counted under the lock, with this row in: what is left after this upload, not after later ones.
            status = quota_status(session, team, challenge, now)
            session.commit()
        except IntegrityError:
            # Another upload of the same run won the race (uq_submission_run): return its row.
            session.rollback()
            earlier = _existing_run(session, challenge, run_id) if run_id is not None else None
            if earlier is None:
                raise
            return _result(session, earlier, team, challenge, now, existing=True)
        return SubmitResult(row.id, challenge.slug, team.name, row.primary_score, dict(row.scores), status.left,
                            status.next_slot_at)


def rescore(url: str | None, submission_id: int, actor: str = "admin") -> scoring.Scored:
    """Validate and score a stored submission again (after a scorer or label fix); updates its row, keeps its time."""
    scoring.forget_held_labels()
    with make_sessionmaker(database_url(url))() as session:
        row = session.get(Submission, submission_id, options=[undefer(Submission.file_data)])
        if row is None:
            raise ChallengeError(f"no submission {submission_id}")
        if row.file_data is None:
            raise ChallengeError(f"submission {submission_id} has no stored file to rescore")
        challenge = session.get(Challenge, row.challenge_id)
        # The upload's name is not stored: the parser tells COCO JSON from CSV by the first character.
        parsed = check_upload(session, challenge, row.file_data, "stored-upload", max(MAX_BYTES, len(row.file_data)))
        scored = scoring.score_submission(session, challenge, parsed)
        old = {"primary_score": row.primary_score, "scores": dict(row.scores)}
        row.primary_score, row.scores, row.n_rows = scored.primary_score, scored.scores, parsed.n_rows
        if scored.private is not None:
            hidden = session.get(PrivateScore, row.id) or PrivateScore(submission_id=row.id)
            hidden.primary_score, hidden.scores = scored.private.primary_score, scored.private.scores
            session.add(hidden)
            if challenge is not None and challenge.closed_at is not None:  # published already: the board follows the fix
                row.private_score, row.private_scores = scored.private.primary_score, scored.private.scores
        session.flush()  # written before the trail's row: SQLite's write lock is then held (leaderboard.audit)
        audit.record(session, "submission.rescored", actor, {"old": old, "new": {
            "primary_score": scored.primary_score, "scores": scored.scores}}, row.challenge_id, f"submission {row.id}")
        session.commit()
        return scored

