"""What a team is told of an upload (issue #15): its scores and rank, or that a hidden phase withholds them, what
the scores cover, and its quota. The gate's answer (gate/app.py) and `convbench submit` without a gate
(leaderboard.admin) are both this dict, so the two say the same thing.

Called with the gate's role: the public part's size comes from the held labels (only their count is told, never
which image is in which part).
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from db.engine import session_scope
from db.schema import Challenge, Submission
from leaderboard import phases, scoring
from leaderboard.challenges import get_challenge
from leaderboard.queries import board_rank, ladder_scores, submissions_frame
from leaderboard.quota import SubmitResult

PRIVATE_NOTE = "the final ranking uses the private part of the test set, shown when the host closes the challenge"


def ladder_note(threshold: float) -> str:
    """What the Ladder does to a shown score, in one sentence (the CLI prints it)."""
    return (f"the Ladder (threshold {threshold:g}): your shown score moves only when an upload beats your shown best "
            f"by more than {threshold:g}, rounded to a multiple of it, so that probing the public part tells little")


def scored_on(session: Any, challenge: Challenge) -> str:
    """The part of the test set the shown scores cover, e.g. "public part: 60 of 120 test images"."""
    total = len(scoring.public_image_ids(session, challenge))
    public = scoring.public_mask(session, challenge)
    if public is None:
        return f"every test image: {total} (no private part)"
    return f"public part: {int(public.sum())} of {total} test images"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def answer(url: str | None, result: SubmitResult, name: str) -> dict[str, Any]:
    """The answer to an upload, or to a look-up of one: scores with CIs and rank where they may be shown; where a
    hidden phase withholds them, none of that (no number, no rank), only `status` saying until when."""
    with session_scope(url) as session:
        challenge = get_challenge(session, result.challenge)
        row = session.get(Submission, result.submission_id)
        made = _aware(row.created_at)  # type: ignore[union-attr]
        # Under the Ladder the answer tells the shown score alone, never the exact one (leaderboard.ladder).
        threshold, shown = challenge.ladder_threshold, row.shown_score  # type: ignore[union-attr]
        covers = scored_on(session, challenge)
        hidden = phases.withholding(phases.withheld(session, challenge.id), made)
        private = scoring.private_mask(session, challenge) is not None
    metric = str(result.scores.get("metric", ""))
    common = {"submission_id": result.submission_id, "challenge": result.challenge, "team": result.team,
              "name": name, "metric": metric, "quota_left": result.quota_left, "next_slot_at": result.next_slot_at,
              "existing": result.existing, "created_at": made, "scored_on": covers,
              "final_ranking": PRIVATE_NOTE if private else "", "ladder": threshold}
    if hidden is not None:
        size = int(submissions_frame(url, result.challenge, best_only=True, limit=1).attrs.get("total", 0))
        return {**common, "hidden": True, "status": hidden.note(), "value": None, "ci": None,
                "scores": {"metric": metric}, "rank": None, "on_board": False, "board_size": size}
    scores, primary = result.scores, result.primary_score
    if threshold is not None and shown is not None:
        scores, primary = ladder_scores(metric, shown), shown
    value = scores.get(metric)
    value = float(value) if isinstance(value, (int, float)) else scoring.metric_value(metric, primary)
    ci = scores.get(f"{metric}_ci")
    rank, on_board, size = board_rank(url, result.challenge, result.submission_id, primary)
    return {**common, "hidden": False, "status": "scored", "value": value,
            "ci": [float(c) for c in ci] if isinstance(ci, list) and None not in ci else None,
            "scores": scores, "rank": rank, "on_board": on_board, "board_size": size}
