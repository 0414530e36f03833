"""The standings (issue #15, points 3 and 4): which entries a board ranks, on which part, with rank intervals.

Computed in the gate's process, the only one whose role reads held labels (rank intervals need each image's
hit or miss), and answered by `GET /v1/challenges/{slug}/standings`; the site's role reads no label, so it asks the
gate for them (leaderboard.gate_client.standings) rather than reading a table the gate would have to rewrite
after every upload. Nothing is stored: a standing is a function of the submissions, cached per state.

While a challenge is open the board is the public part's: each team's best public entry (official baselines:
every entry), submissions of a hidden phase left out while their scores are withheld. Once the host has closed it, the official board is the
private part's ranking of each team's final selections (leaderboard.final), and the public board stays beside
it; each team's shift is its public rank minus its private rank (positive: it rose). Before the close nothing
here touches the private part: the same work whatever the private scores are.

Rank intervals come from leaderboard.ranking's paired bootstrap on the part shown; a detection challenge (mAP per
replicate is not computed) gets ranks without intervals. Under the Ladder (leaderboard.ladder) the public board ranks
the Ladder's shown scores, without intervals: an interval from the exact public score would tell what the Ladder
hides. The private ranking at the close is the same as without it.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.schema import Challenge, FinalSelection, PrivateScore, Submission, Team
from leaderboard import phases, ranking, scoring
from leaderboard.errors import ChallengeError


@dataclass(frozen=True)
class Row:
    submission_id: int
    team: str
    entry: str
    official: bool
    score: float  # the metric's own value on the part ranked (an error, a mAP)
    rank: int  # competition rank by the point estimate
    low: int | None  # the 95% rank interval; None: not computed (detection)
    high: int | None
    tied_with_next: bool  # not significantly different from the row after it
    shift: int | None = None  # public rank - private rank (positive: rose at the close); None on a public board
    chosen_by: str = ""  # after close: "team" (marked) or "default" (its best public ones)


def _entries(session: Session, challenge: Challenge) -> list[tuple[Submission, str, bool]]:
    """Every submission a board may show, with its team's name and officialness: those of a hidden phase only once
    their scores are shown (leaderboard.phases.withheld: the phase's end, or the close)."""
    shown = phases.shown_clause(phases.withheld(session, challenge.id))
    return [(s, name, official) for s, name, official in session.execute(
        select(Submission, Team.name, Team.official).join(Team, Team.id == Submission.team_id)
        .where(Submission.challenge_id == challenge.id, *shown)
        .order_by(Submission.primary_score, Submission.created_at, Submission.id)).all()]


def _best_per_team(entries: list[tuple[Submission, str, bool]], score: dict[int, float]) -> list[tuple[Submission, str, bool]]:
    """Each team's entry of lowest `score`, the earliest of those (official teams: every entry), in score order."""
    kept: dict[Any, tuple[Submission, str, bool]] = {}

    def order(s: Submission) -> tuple[float, Any, int]:
        return score[s.id], s.created_at, s.id

    for s, name, official in entries:
        if s.id not in score:
            continue
        key = ("run", s.id) if official else ("team", name)
        if key not in kept or order(s) < order(kept[key][0]):
            kept[key] = (s, name, official)
    return sorted(kept.values(), key=lambda e: (score[e[0].id], e[0].created_at, e[0].id))


def _ranked(session: Session, challenge: Challenge, chosen: list[tuple[Submission, str, bool]],
            score: dict[int, float], images: np.ndarray | None, replicates: int, seed: int,
            with_intervals: bool = True) -> list[Row]:
    metric = challenge.metric
    if not chosen:
        return []
    ids = [s.id for s, _, _ in chosen]
    by_id = {s.id: (s, name, official) for s, name, official in chosen}
    try:
        ranking.top_k_of(metric)
        intervals = (ranking.board_intervals(session, challenge, ids, images=images, replicates=replicates, seed=seed)
                     if challenge.task == "classification" and with_intervals else None)
    except ChallengeError:
        intervals = None
    if intervals is None:  # ranks by the stored score, no intervals
        values = np.array([score[i] for i in ids])
        ranks = ranking.competition_ranks(values)
        return [Row(i, by_id[i][1], by_id[i][0].label or "", by_id[i][2], scoring.metric_value(metric, score[i]),
                    int(r), None, None, False) for i, r in zip(ids, ranks)]
    return [Row(e.submission_id, by_id[e.submission_id][1], by_id[e.submission_id][0].label or "",
                by_id[e.submission_id][2], scoring.metric_value(metric, e.error), e.rank, e.low, e.high,
                e.tied_with_next) for e in intervals]


def _key(row: Row) -> Any:
    return ("run", row.submission_id) if row.official else ("team", row.team)


def compute(session: Session, challenge: Challenge, replicates: int = ranking.REPLICATES,
            seed: int = ranking.SEED) -> dict[str, Any]:
    """The standings of `challenge` as JSON-ready data: `board` (the official one) and, after close, `public`."""
    closed = challenge.closed_at is not None
    entries = _entries(session, challenge)
    ladder = challenge.ladder_threshold is not None
    public_score = {s.id: s.primary_score for s, _, _ in entries}
    shown_score = {s.id: s.shown_score for s, _, _ in entries if s.shown_score is not None} if ladder else public_score
    public_rows = _ranked(session, challenge, _best_per_team(entries, shown_score), shown_score,
                          scoring.public_mask(session, challenge), replicates, seed, with_intervals=not ladder)
    answer: dict[str, Any] = {"challenge": challenge.slug, "metric": challenge.metric, "closed": closed,
                              "ladder": challenge.ladder_threshold,
                              "part": "public", "level": ranking.LEVEL, "replicates": replicates, "seed": seed,
                              "board": [asdict(r) for r in public_rows], "public": None}
    if not closed:
        return answer
    private_mask = scoring.private_mask(session, challenge)
    if private_mask is None:  # no private part (a challenge from before the split): the finals on every image
        private_score = dict(public_score)
    else:
        private_score = dict(session.execute(select(PrivateScore.submission_id, PrivateScore.primary_score)
                                             .join(Submission, Submission.id == PrivateScore.submission_id)
                                             .where(Submission.challenge_id == challenge.id)).all())
    finals = dict(session.execute(select(FinalSelection.submission_id, FinalSelection.chosen_by)
                                  .where(FinalSelection.challenge_id == challenge.id)).all())
    selected = [e for e in entries if e[2] or e[0].id in finals]
    private_rows = _ranked(session, challenge, _best_per_team(selected, private_score), private_score,
                           private_mask, replicates, seed)
    public_rank = {_key(r): r.rank for r in public_rows}
    board = [Row(**{**asdict(r), "shift": (public_rank[_key(r)] - r.rank) if _key(r) in public_rank else None,
                    "chosen_by": finals.get(r.submission_id, "official" if r.official else "")})
             for r in private_rows]
    return {**answer, "part": "private" if private_mask is not None else "public",
            "board": [asdict(r) for r in board], "public": [asdict(r) for r in public_rows]}


def state(session: Session, challenge: Challenge) -> tuple[Any, ...]:
    """What the standings depend on: a new submission, a rescore's time aside, the close, or a hidden phase's end
    changes it."""
    count, newest = session.execute(select(func.count(Submission.id), func.max(Submission.id))
                                    .where(Submission.challenge_id == challenge.id)).one()
    hidden = tuple(w.phase for w in phases.withheld(session, challenge.id))
    return (challenge.id, str(challenge.created_at), count, newest, str(challenge.closed_at), hidden)


_CACHE: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_KEPT = 32


def cached(session: Session, challenge: Challenge) -> dict[str, Any]:
    """`compute`, once per state of the challenge's submissions (each state is computed at most once per process,
    so a busy board costs one bootstrap per upload, not one per visitor)."""
    key = (session.get_bind().engine.url.render_as_string(hide_password=True), *state(session, challenge))
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    result = compute(session, challenge)
    with _CACHE_LOCK:
        _CACHE[key] = result
        while len(_CACHE) > _CACHE_KEPT:
            _CACHE.popitem(last=False)
    return result


def visible_ids(session: Session, challenge: Challenge) -> set[int]:
    """The submissions the compare view may name: not of a hidden phase before the close."""
    return {s.id for s, _, _ in _entries(session, challenge)}


def compare(session: Session, challenge: Challenge, a: int, b: int) -> dict[str, Any]:
    """Is `a` better than `b`? On the public part while open, the private one after the close."""
    shown = visible_ids(session, challenge)
    for i in (a, b):
        if i not in shown:
            raise ChallengeError(f"no submission {i} on the board of {challenge.slug!r}")
    closed = challenge.closed_at is not None
    if challenge.ladder_threshold is not None and not closed:
        raise ChallengeError(f"challenge {challenge.slug!r} shows the Ladder's scores: comparing two submissions on "
                             f"the public part would tell what it hides; compare them after the close")
    images = scoring.private_mask(session, challenge) if closed else scoring.public_mask(session, challenge)
    if closed and images is None:
        images = None
    result = ranking.compare_submissions(session, challenge, a, b, images=images)
    return {"challenge": challenge.slug, "a": a, "b": b, "part": "private" if closed and
            scoring.private_mask(session, challenge) is not None else "public", **asdict(result),
            "significant": result.significant}


# --- what the site shows (no streamlit here: the gate's answer in, text cells out) ------------------------

def tie_marks(rows: list[dict[str, Any]]) -> list[str]:
    """The rank as shown: entries whose order is not significant share the first one's rank with an "=" (1=, 1=,
    3): a run of rows each tied with the next is one group."""
    marks: list[str] = []
    group_rank, group_size = 0, 0
    sizes: list[int] = []
    for i, row in enumerate(rows):
        if i == 0 or not rows[i - 1]["tied_with_next"]:
            if group_size:
                sizes.extend([group_size] * group_size)
            group_rank, group_size = int(row["rank"]), 0
        group_size += 1
        marks.append(str(group_rank))
    sizes.extend([group_size] * group_size)
    return [f"{m}=" if n > 1 else m for m, n in zip(marks, sizes)]


def table(rows: list[dict[str, Any]], metric_display: str, text: Any, with_shift: bool = False) -> list[dict[str, str]]:
    """The rows as text cells: rank (tied groups marked "="), rank interval, entry, team, score, shift."""
    shown = []
    for mark, row in zip(tie_marks(rows), rows):
        cells = {"rank": mark, "rank interval": (f"{row['low']}–{row['high']}" if row["low"] is not None else ""),
                 "entry": row["entry"], "team": row["team"], metric_display: text(row["score"])}
        if with_shift:
            shift = row.get("shift")
            cells["public→private"] = "" if shift is None else ("=" if shift == 0 else f"{shift:+d}")
        shown.append(cells)
    return shown
