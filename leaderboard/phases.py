"""Phases and deadlines (issue #15, point 2): when a challenge takes submissions, and how many.

A phase has a start and an end (none: until the host closes the challenge), a quota per rolling window, and
optionally a cap per UTC day and a cap in the whole phase; its visibility says whether its scores are shown while
it runs (public) or withheld (hidden) until the phase ends, or the host closes the challenge if that comes first
(an open-ended phase: until the close). A withheld submission is still scored and still counts against every
rule; no board, export or answer shows its score, its rank or its place in an order (`withheld`,
`shown_clause`). A challenge with no phase row has one open-ended phase: its own rule (Challenge.quota per
window_days), as before phases existed. Phases may not overlap, so at most one is open.

leaderboard.quota counts every rule in its one locked transaction (invariant 2): `status` is what it calls. Each
rule counts the team's submissions inside the phase, so a new phase starts with a fresh allowance.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, not_, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from db.schema import Challenge, Phase, Submission, Team
from leaderboard import audit, throttle
from leaderboard.errors import ChallengeError

VISIBILITY = ("public", "hidden")
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Rule:
    name: str
    starts_at: datetime | None  # None: since the challenge began
    ends_at: datetime | None  # None: until the challenge closes
    quota: int  # per rolling window
    window_days: float
    per_day: int | None = None
    total: int | None = None
    visibility: str = "public"

    def opens(self, now: datetime) -> bool:
        return (self.starts_at is None or self.starts_at <= now) and (self.ends_at is None or now < self.ends_at)

    def times(self) -> str:
        start = "the start" if self.starts_at is None else f"{self.starts_at:%Y-%m-%d %H:%M:%S}"
        end = "the close" if self.ends_at is None else f"{self.ends_at:%Y-%m-%d %H:%M:%S}"
        return f"{start} to {end} UTC"


@dataclass(frozen=True)
class Status:
    """Where a team stands in the open phase: `left` (None: official), when a slot frees, and why none is left."""

    used: int  # in the current rolling window
    left: int | None
    next_slot_at: datetime | None
    reason: str = ""  # the refusal's words when left == 0
    phase: str = ""
    rule: Rule | None = None  # the open phase's rule; None outside every phase
    today: int = 0  # the team's submissions this UTC day, and in the whole phase
    in_phase: int = 0

    def allowances(self) -> list[dict[str, Any]]:
        """Each rule of the open phase with its limit, what the team used and what is left under it."""
        rule = self.rule
        if rule is None:
            return []
        counted = [("rolling window", rule.quota, self.used, rule.window_days),
                   *([("per UTC day", rule.per_day, self.today, None)] if rule.per_day is not None else []),
                   *([("in the phase", rule.total, self.in_phase, None)] if rule.total is not None else [])]
        return [{"rule": name, "limit": limit, "used": used, "left": max(limit - used, 0), "window_days": days}
                for name, limit, used, days in counted]


def _aware(moment: datetime | None) -> datetime | None:
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


def rules(session: Session, challenge: Challenge) -> list[Rule]:
    """The challenge's phases by start; without a row, its one open-ended phase."""
    rows = session.scalars(select(Phase).where(Phase.challenge_id == challenge.id).order_by(Phase.starts_at)).all()
    if not rows:
        return [Rule("open", None, None, challenge.quota, challenge.window_days)]
    return [Rule(r.name, _aware(r.starts_at), _aware(r.ends_at), r.quota, r.window_days, r.per_day, r.total,
                 r.visibility) for r in rows]


def open_rule(phases: list[Rule], now: datetime) -> Rule | None:
    return next((r for r in phases if r.opens(now)), None)


def final_deadline(session: Session, challenge: Challenge) -> datetime | None:
    """When final selection ends: the last phase's end, if every phase ends; None: until the challenge closes."""
    ends = [r.ends_at for r in rules(session, challenge)]
    return None if any(e is None for e in ends) else max(e for e in ends if e is not None)


def _outside(challenge: Challenge, phases: list[Rule], now: datetime) -> tuple[str, datetime | None]:
    later = [r.starts_at for r in phases if r.starts_at is not None and r.starts_at > now]
    listed = "; ".join(f"{r.name!r} from {r.times()}" for r in phases)
    return (f"challenge {challenge.slug!r} has no open phase at {now:%Y-%m-%d %H:%M:%S} UTC; its phases: {listed}",
            min(later) if later else None)


def status(session: Session, team: Team, challenge: Challenge, now: datetime) -> Status:
    """Every rule of the phase open at `now`, counted in one query (call it under the quota's lock)."""
    phases = rules(session, challenge)
    rule = open_rule(phases, now)
    window_start = now - timedelta(days=rule.window_days if rule else challenge.window_days)
    if rule is not None and rule.starts_at is not None:
        window_start = max(window_start, rule.starts_at)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    in_window = Submission.created_at > window_start
    in_day = Submission.created_at >= day_start
    query = select(func.coalesce(func.sum(case((in_window, 1), else_=0)), 0),
                   func.min(case((in_window, Submission.created_at), else_=None)),
                   func.coalesce(func.sum(case((in_day, 1), else_=0)), 0), func.count(Submission.id)) \
        .where(Submission.team_id == team.id, Submission.challenge_id == challenge.id)
    if rule is not None and rule.starts_at is not None:
        query = query.where(Submission.created_at >= rule.starts_at)
    used, oldest, today, total = session.execute(query).one()
    used, today, total = int(used), int(today), int(total)
    if team.official:  # the benchmark's own runs: bound by no phase and no quota
        return Status(used, None, None, phase=rule.name if rule else "", rule=rule, today=today, in_phase=total)
    if rule is None:
        reason, start = _outside(challenge, phases, now)
        return Status(0, 0, start, reason)
    # Each binding rule's refusal and when it lets go (None: not within this phase).
    bound: list[tuple[str, datetime | None]] = []
    slug, name = challenge.slug, rule.name
    if used >= rule.quota:
        start = _aware(oldest)
        at = start + timedelta(days=rule.window_days) if start is not None else None
        words = f"quota reached: {used} of {rule.quota} submissions to {slug!r} in the last {rule.window_days:g} days"
        bound.append((words, at))
    if rule.per_day is not None and today >= rule.per_day:
        bound.append((f"quota reached: {today} of {rule.per_day} submissions to {slug!r} today (UTC)", day_start + DAY))
    if rule.total is not None and total >= rule.total:
        words = f"quota reached: {total} of {rule.total} submissions to {slug!r} in phase {name!r} ({rule.times()})"
        bound.append((words, None))
    left = min([rule.quota - used] + ([rule.per_day - today] if rule.per_day is not None else [])
               + ([rule.total - total] if rule.total is not None else []))
    if not bound:
        return Status(used, max(left, 0), None, phase=name, rule=rule, today=today, in_phase=total)
    frees = [at for _, at in bound]
    at = None if None in frees else max(a for a in frees if a is not None)
    if at is not None and rule.ends_at is not None and at >= rule.ends_at:
        at = None  # the slot would free after the phase ends
    if at is None:
        later = [r.starts_at for r in phases if r.starts_at is not None and r.starts_at > now]
        at = min(later) if later else None
    words = "; ".join(text for text, _ in bound)
    when = f"; the next slot frees at {at:%Y-%m-%d %H:%M:%S} UTC" if at is not None else \
        f"; no more in phase {name!r}, which runs {rule.times()}"
    return Status(used, 0, at, words + when, name, rule, today, total)


def add_phase(session: Session, challenge: Challenge, name: str, starts_at: datetime, ends_at: datetime | None,
              quota: int, window_days: float = 7.0, per_day: int | None = None, total: int | None = None,
              visibility: str = "public", actor: str = "admin") -> Phase:
    """A new phase of `challenge`, checked (times in order, no overlap, positive caps) and recorded in the audit."""
    starts_at = starts_at if starts_at.tzinfo else starts_at.replace(tzinfo=UTC)
    ends_at = _aware(ends_at)
    if not name or len(name) > 64:
        raise ChallengeError(f"phase name: 1-64 characters, got {name!r}")
    if ends_at is not None and ends_at <= starts_at:
        raise ChallengeError(f"phase {name!r}: its end {ends_at:%Y-%m-%d %H:%M:%S} is not after its start "
                             f"{starts_at:%Y-%m-%d %H:%M:%S}")
    for label, value in (("quota", quota), ("per-day", per_day), ("total", total)):
        if value is not None and value < 1:
            raise ChallengeError(f"phase {name!r}: {label} must be at least 1, got {value}")
    if not window_days > 0:
        raise ChallengeError(f"phase {name!r}: window days must be positive, got {window_days:g}")
    if visibility not in VISIBILITY:
        raise ChallengeError(f"phase {name!r}: visibility must be one of {', '.join(VISIBILITY)}, got {visibility!r}")
    if challenge.closed_at is not None:
        raise ChallengeError(f"challenge {challenge.slug!r} is closed: it takes no new phase")
    new = Rule(name, starts_at, ends_at, quota, window_days, per_day, total, visibility)
    for other in session.scalars(select(Phase).where(Phase.challenge_id == challenge.id)):
        if other.name == name:
            raise ChallengeError(f"challenge {challenge.slug!r} has a phase {name!r} already")
        o_start, o_end = _aware(other.starts_at), _aware(other.ends_at)
        assert o_start is not None
        if (o_end is None or starts_at < o_end) and (ends_at is None or o_start < ends_at):
            rule = Rule(other.name, o_start, o_end, 1, 1.0)
            raise ChallengeError(f"phase {name!r} ({new.times()}) overlaps phase {other.name!r} ({rule.times()})")
    row = Phase(challenge_id=challenge.id, name=name, starts_at=starts_at, ends_at=ends_at, quota=quota,
                window_days=float(window_days), per_day=per_day, total=total, visibility=visibility)
    session.add(row)
    session.flush()
    audit.record(session, "phase.added", actor, {"name": name, "starts_at": starts_at.isoformat(),
                 "ends_at": ends_at.isoformat() if ends_at else None, "quota": quota, "window_days": window_days,
                 "per_day": per_day, "total": total, "visibility": visibility}, challenge.id,
                 f"challenge {challenge.slug}")
    return row


@dataclass(frozen=True)
class Withheld:
    """A hidden phase whose scores are still withheld: no score of a submission made in [starts_at, ends_at) is
    shown until `ends_at` (None: until the host closes the challenge)."""

    phase: str
    starts_at: datetime
    ends_at: datetime | None

    def covers(self, moment: datetime) -> bool:
        at = _aware(moment)
        assert at is not None
        return self.starts_at <= at and (self.ends_at is None or at < self.ends_at)

    def until(self) -> str:
        if self.ends_at is None:
            return f"the host closes the challenge (phase {self.phase!r} is hidden)"
        return f"{self.ends_at:%Y-%m-%d %H:%M:%S} UTC, the end of hidden phase {self.phase!r}"

    def note(self) -> str:
        """What a team is told in place of the numbers."""
        return f"scored; hidden until {self.until()}"


def withheld(bind: Session | Connection, challenge_id: int, now: datetime | None = None) -> list[Withheld]:
    """The hidden phases of a challenge whose scores are withheld at `now` (default: the database server's clock):
    those not yet ended; none once the challenge is closed. Read with the site's role as well as the gate's."""
    connection = bind.connection() if isinstance(bind, Session) else bind
    closed = connection.scalar(select(Challenge.closed_at).where(Challenge.id == challenge_id))
    if closed is not None:
        return []
    rows = connection.execute(select(Phase.name, Phase.starts_at, Phase.ends_at)
                              .where(Phase.challenge_id == challenge_id, Phase.visibility == "hidden")).all()
    if not rows:
        return []
    now = _aware(now) if now is not None else throttle.server_now(connection)
    assert now is not None
    spans = [Withheld(name, _aware(start) or start, _aware(end)) for name, start, end in rows]
    return [w for w in spans if w.ends_at is None or now < w.ends_at]


def withholding(spans: list[Withheld], created_at: datetime) -> Withheld | None:
    """The withheld phase a submission made at `created_at` belongs to; None: its scores are shown."""
    return next((w for w in spans if w.covers(created_at)), None)


def shown_clause(spans: list[Withheld]) -> list[Any]:
    """WHERE terms that keep only the submissions whose scores may be shown (none when nothing is withheld)."""
    if not spans:
        return []
    made = Submission.created_at
    return [not_(or_(*[and_(made >= w.starts_at, *([made < w.ends_at] if w.ends_at is not None else []))
                       for w in spans]))]
