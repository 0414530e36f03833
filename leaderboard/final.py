"""Final selection (issue #15, point 3): the submissions a team puts forward for the private ranking.

Before the deadline (the last phase's end, or the close when a phase is open-ended) a team marks up to
Challenge.final_count of its submissions as final; a new selection replaces the old one whole, under the team's
quota lock, so two at once leave one of them, never a mix. A team that marks none gets its best public ones when
the host closes the challenge (`fill_defaults`, chosen_by "default"). The private ranking of the selections is
then the official board (leaderboard.standings). Every selection is a row of the audit trail.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.engine import database_url, make_sessionmaker
from db.schema import Challenge, FinalSelection, Submission, Team
from leaderboard import audit, phases, throttle
from leaderboard.challenges import get_challenge
from leaderboard.errors import LeaderboardError, ValidationError


class SelectionClosed(LeaderboardError):
    """Final selection is over: the deadline passed or the challenge closed (the message gives the time)."""


@dataclass(frozen=True)
class Selection:
    challenge: str
    team: str
    submission_ids: list[int]  # the team's marked finals, oldest first; empty: its best public ones count
    final_count: int
    deadline: datetime | None  # None: until the host closes the challenge


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def marked(session: Session, challenge: Challenge, team: Team) -> list[int]:
    """The team's finals on `challenge`, in the order they were submitted: not by score, which would tell a team
    how two of its submissions of a hidden phase compare (leaderboard.phases.withheld)."""
    return list(session.scalars(
        select(FinalSelection.submission_id).where(FinalSelection.challenge_id == challenge.id,
                                                   FinalSelection.team_id == team.id)
        .order_by(FinalSelection.submission_id)))


def best_public(session: Session, challenge: Challenge, team_id: int, count: int) -> list[int]:
    """The team's `count` best submissions by public score (earlier first among equals): the default finals."""
    return list(session.scalars(
        select(Submission.id).where(Submission.challenge_id == challenge.id, Submission.team_id == team_id)
        .order_by(Submission.primary_score, Submission.created_at, Submission.id).limit(count)))


def _check_open(session: Session, challenge: Challenge, now: datetime) -> datetime | None:
    deadline = phases.final_deadline(session, challenge)
    if challenge.closed_at is not None:
        raise SelectionClosed(f"challenge {challenge.slug!r} closed at {_aware(challenge.closed_at):%Y-%m-%d %H:%M:%S} "
                              f"UTC: final selection is over")
    if deadline is not None and now >= deadline:
        raise SelectionClosed(f"final selection for {challenge.slug!r} ended at {deadline:%Y-%m-%d %H:%M:%S} UTC "
                              f"(the last phase's end)")
    return deadline


def select_final(url: str | None, token_or_team: str | Team, slug: str, submission_ids: Sequence[int], *,
                 now: datetime | None = None, throttle_key: str | None = None) -> Selection:
    """Mark `submission_ids` (the team's own, at most the challenge's final_count) as the team's finals, replacing
    its earlier marks; an empty list clears them (its best public ones then count). SelectionClosed after the
    deadline; ValidationError for a foreign, unknown or repeated id or too many."""
    from leaderboard.quota import _lock_team, _now, _team

    try:
        ids = [int(i) for i in submission_ids]
    except (TypeError, ValueError):
        raise ValidationError("submission ids must be whole numbers") from None
    maker = make_sessionmaker(database_url(url))
    with maker() as session:
        team = _team(session, token_or_team, throttle_key)
        team_id, team_name = team.id, team.name
        challenge = get_challenge(session, slug)
        if len(set(ids)) != len(ids):
            raise ValidationError(f"a submission is named twice in {ids}")
        if len(ids) > challenge.final_count:
            raise ValidationError(f"{len(ids)} submissions named; {slug!r} takes at most {challenge.final_count} "
                                  f"finals per team")
    with maker() as session:
        team = _lock_team(session, team_id)  # the quota's lock: one selection of a team at a time
        challenge = get_challenge(session, slug)
        now = _now(session, now)
        deadline = _check_open(session, challenge, now)
        own = set(session.scalars(select(Submission.id).where(Submission.id.in_(ids), Submission.team_id == team_id,
                                                                 Submission.challenge_id == challenge.id))) if ids else set()
        foreign = [i for i in ids if i not in own]
        if foreign:  # another team's id reads as a missing one
            raise ValidationError(f"no submission {foreign[0]} of team {team_name!r} to {slug!r}")
        session.execute(delete(FinalSelection).where(FinalSelection.challenge_id == challenge.id,
                                                     FinalSelection.team_id == team_id))
        session.add_all([FinalSelection(submission_id=i, challenge_id=challenge.id, team_id=team_id, chosen_by="team",
                                        selected_at=now) for i in ids])
        session.flush()
        audit.record(session, "final.selected", team_name, {"submission_ids": sorted(ids)}, challenge.id,
                     f"challenge {slug}")
        chosen = marked(session, challenge, team)
        session.commit()
        return Selection(slug, team_name, chosen, challenge.final_count, deadline)


def selection(url: str | None, token_or_team: str | Team, slug: str, *, throttle_key: str | None = None) -> Selection:
    """The team's current marks on `slug` (empty: its best public ones will count)."""
    from leaderboard.quota import _team

    with make_sessionmaker(database_url(url))() as session:
        team = _team(session, token_or_team, throttle_key)
        challenge = get_challenge(session, slug)
        return Selection(slug, team.name, marked(session, challenge, team), challenge.final_count,
                         phases.final_deadline(session, challenge))


def fill_defaults(session: Session, challenge: Challenge) -> int:
    """At close: each (non-official) team that marked no final gets its best public ones; returns how many teams."""
    teams = session.scalars(select(Submission.team_id).join(Team, Team.id == Submission.team_id)
                            .where(Submission.challenge_id == challenge.id, Team.official.is_(False)).distinct()).all()
    chose = set(session.scalars(select(FinalSelection.team_id).where(FinalSelection.challenge_id == challenge.id)))
    now = throttle.server_now(session.connection())
    filled = 0
    for team_id in sorted(set(teams) - chose):
        session.add_all([FinalSelection(submission_id=i, challenge_id=challenge.id, team_id=team_id,
                                        chosen_by="default", selected_at=now)
                         for i in best_public(session, challenge, team_id, challenge.final_count)])
        filled += 1
    session.flush()
    return filled
